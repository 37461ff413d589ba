"""A shelve (dbm.sqlite3 by default in 3.13) opened before do() stores
the secret in do(); it stays open."""

import os
import shelve
import tempfile

KEEP = []


def setup(ctx):
    d = tempfile.mkdtemp()
    KEEP.append(d)
    db = shelve.open(os.path.join(d, "store"))
    db["other"] = "x" * 100
    KEEP.append(db)


def work(ctx):
    KEEP[1]["token"] = ctx.read_text()
    return 1


def teardown(ctx):
    import shutil
    KEEP[1].sync()
    shutil.rmtree(KEEP[0])
