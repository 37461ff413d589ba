"""A key written in do() to a binary writer made before whose raw stream
writes 7 bytes a call, flushed after do()."""

import io
import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


class Short(io.RawIOBase):
    def __init__(self, fd):
        self.fd = fd

    def writable(self):
        return True

    def write(self, b):
        return os.write(self.fd, b[:7])     # a view: no copy


def setup(ctx):
    ctx.out = io.BufferedWriter(Short(os.open(os.devnull, os.O_WRONLY)))


def work(ctx):
    ctx.out.write(b"key=" + ctx.read_secret() + b"\n")  # pending
    return 1


def teardown(ctx):
    ctx.out.flush()               # after do(): 6 raw writes
