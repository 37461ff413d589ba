"""zlib: compress and decompress a document holding the secret."""

import zlib

CONTROL_WHERE = ("heap",)


def work(ctx):
    key = ctx.read_secret()
    doc = b"header\n" + b"key=" + key + b"\n" + bytes(range(256)) * 16
    packed = zlib.compress(doc, 6)
    c = zlib.compressobj(9)
    stream = c.compress(doc) + c.flush()
    out = zlib.decompress(packed) + zlib.decompressobj().decompress(stream)
    return len(out)
