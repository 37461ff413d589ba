"""An os.scandir() iterator opened before do() (nothing read yet) lists,
in do(), a file named after the secret: the C library's directory buffer
was allocated before do(). The iterator is closed after do()."""

import os
import tempfile

KEEP = []


def setup(ctx):
    d = tempfile.mkdtemp()
    KEEP.append(d)


def work(ctx):
    d = KEEP[0]
    name = ctx.read_text()
    open(os.path.join(d, name), "wb").close()
    it = KEEP_IT[0]
    n = sum(1 for e in it)
    os.unlink(os.path.join(d, name))
    return n


KEEP_IT = []


def main(ctx):
    # The iterator opens the directory now, before do(); its first read
    # (getdents) happens in do().
    KEEP_IT.append(os.scandir(KEEP[0]))
    ctx.protect(work, ctx)


def teardown(ctx):
    KEEP_IT[0].close()
    os.rmdir(KEEP[0])
