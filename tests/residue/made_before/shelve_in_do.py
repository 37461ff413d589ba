"""A shelve (dbm.sqlite3 by default in 3.13) opened, written the secret
and closed in do()."""

import os
import shelve
import tempfile

DIRS = []


def setup(ctx):
    DIRS.append(tempfile.mkdtemp())


def work(ctx):
    with shelve.open(os.path.join(DIRS[0], "store")) as db:
        db["token"] = ctx.read_text()
        db.sync()
    return 1


def teardown(ctx):
    import shutil
    shutil.rmtree(DIRS[0])
