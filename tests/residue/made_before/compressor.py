"""A zlib compressor made before do() compresses the secret in do()
(sync flush); the stream stays open, as a long-lived one would."""

import zlib

KEEP = []


def setup(ctx):
    KEEP.append(zlib.compressobj())


def work(ctx):
    c = KEEP[0]
    return len(c.compress(ctx.read_secret()) + c.flush(zlib.Z_SYNC_FLUSH))
