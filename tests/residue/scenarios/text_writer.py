"""A token written in do() to a text file made before, flushed after."""

import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    ctx.out = open(os.devnull, "w", encoding="utf-8")   # as sys.stdout is


def work(ctx):
    ctx.out.write("token=%s\n" % ctx.read_text())       # pending: no flush
    return 1


def teardown(ctx):
    ctx.out.flush()               # after do() returned
