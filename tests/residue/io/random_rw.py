"""A key written in do() into a file open for update (BufferedRandom) made
before, read back through the buffer, more written and read, flushed."""

import os
import tempfile

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    fd, ctx.path = tempfile.mkstemp()
    os.write(fd, b"".join(b"line %04d\n" % i for i in range(400)))
    os.close(fd)
    ctx.f = open(ctx.path, "r+b")
    ctx.f.read(10)                # the buffer exists, ordinary memory


def work(ctx):
    f = ctx.f
    key = ctx.read_secret()
    f.seek(1000)
    f.write(b"key=" + key + b"\n")        # pending, sharing the buffer
    f.seek(1000)
    line = f.readline()                    # back, across the pending write
    f.seek(0, 2)
    f.write(b"more\n")
    f.seek(1004)                           # back into the key again
    again = f.read(len(key))
    f.read(100)
    f.flush()
    if ctx.mode == "protected" and (line[4:-1] != key or again != key):
        raise AssertionError("read back wrong")
    return len(line) + len(again)


def teardown(ctx):
    os.unlink(ctx.path)           # the page cache is not this process
