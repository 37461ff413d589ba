"""struct: pack the key into a record and unpack it."""

import struct

RECORD = struct.Struct("<I32sQ")


def work(ctx):
    key = ctx.read_secret()
    blob = RECORD.pack(7, key, 42)
    n, k, tail = RECORD.unpack(blob)
    more = struct.pack("<%ds" % len(key), key)
    return n + len(k) + tail + len(more)
