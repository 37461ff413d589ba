"""Text written in do() onto a pending list the wrapper made before it
(text written outside do() first), flushed after do()."""

import os

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    ctx.out = open(os.devnull, "w", encoding="utf-8")   # as sys.stdout is
    ctx.out.write("user=alice\n")
    ctx.out.write("host=db\n")    # pending: a list made outside do()


def work(ctx):
    ctx.out.write("token=")       # the list grows in do(): still ordinary
    ctx.out.write(ctx.read_text())
    ctx.out.write("\n")
    return 1


def teardown(ctx):
    ctx.out.flush()               # after do() returned: joins the list
