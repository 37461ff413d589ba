"""A key written in do() to a small binary writer made before whose raw
stream, asked to flush, writes part and then would block: the pending
bytes, the key among them, shift to the buffer's start. Flushed after."""

import io
import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


class Blocking(io.RawIOBase):
    def __init__(self, fd):
        self.fd = fd
        self.calls = 0

    def writable(self):
        return True

    def write(self, b):
        self.calls += 1
        if self.calls == 1:
            return os.write(self.fd, b[:60])
        if self.calls == 2:
            return None                      # would block
        return os.write(self.fd, b)


def setup(ctx):
    fd = os.open(os.devnull, os.O_WRONLY)
    ctx.out = io.BufferedWriter(Blocking(fd), buffer_size=128)
    ctx.out.write(b"x" * 69)     # pending before do()


def work(ctx):
    ctx.out.write(b"key=" + ctx.read_secret() + b"\n")   # 106 pending
    # Does not fit: the flush writes 60 and would block; the 46 pending
    # move to the start, these 24 after them, short of the key's old place.
    ctx.out.write(b"y" * 24)
    return 1


def teardown(ctx):
    ctx.out.flush()
