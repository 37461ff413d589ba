"""A file named after the secret is listed with os.listdir() and
os.scandir() (the names are read through the C library's directory
buffer), then removed. The lists are dropped."""

import os
import tempfile

DIRS = []


def setup(ctx):
    DIRS.append(tempfile.mkdtemp())


def work(ctx):
    d = DIRS[0]
    name = ctx.read_text()
    open(os.path.join(d, name), "wb").close()
    n = len(os.listdir(d))
    with os.scandir(d) as it:
        n += sum(1 for e in it if e.is_file())
    os.unlink(os.path.join(d, name))
    return n


def teardown(ctx):
    os.rmdir(DIRS[0])
