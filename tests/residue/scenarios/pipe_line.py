"""A line read in do() from a pipe whose reader was made before (stdin)."""

import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    # Made before do(), as sys.stdin.buffer or a child's stdout are: its
    # buffer is ordinary memory until do() reads through it.
    r, ctx.w = os.pipe()
    ctx.reader = os.fdopen(r, "rb")


def work(ctx):
    os.write(ctx.w, ctx.read_secret() + b"\n")
    return len(ctx.reader.readline())
