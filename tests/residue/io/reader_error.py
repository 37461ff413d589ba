"""A key line read in do() through a small reader made before whose raw
stream fails in the middle of the line (OSError): the read is retried
from the right place and succeeds."""

import io
import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


class Flaky(io.RawIOBase):
    def __init__(self, fd):
        self.fd = fd
        self.calls = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        self.calls += 1
        if self.calls == 3:
            raise OSError("flaky")
        return os.readv(self.fd, [b])        # into the buffer: no copy

    def seek(self, pos, whence=0):
        return os.lseek(self.fd, pos, whence)

    def tell(self):
        return os.lseek(self.fd, 0, 1)


def setup(ctx):
    # Its buffer exists from here, ordinary memory (empty: the key is read
    # only in do()).
    ctx.f = io.BufferedReader(Flaky(os.open(ctx.secret_path, os.O_RDONLY)),
                              buffer_size=16)


def work(ctx):
    try:
        ctx.f.readline()          # 16 + 16 bytes read, then the error
    except OSError:
        pass
    ctx.f.seek(0)
    return len(ctx.f.readline())  # whole, from the start
