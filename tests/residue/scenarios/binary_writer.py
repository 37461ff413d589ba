"""A key written in do() to a binary file made before, flushed after."""

import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    ctx.out = open(os.devnull, "wb")


def work(ctx):
    ctx.out.write(b"key=" + ctx.read_secret() + b"\n")  # pending: no flush
    return 1


def teardown(ctx):
    ctx.out.flush()               # after do() returned
