"""A module on disk whose line holding the secret has a syntax error is
imported: the SyntaxError's text comes from the file read again through
C stdio (fopen/fgets). The exception is dropped."""

import importlib
import os
import sys
import tempfile

DIRS = []


def setup(ctx):
    d = tempfile.mkdtemp()
    DIRS.append(d)
    sys.path.insert(0, d)


def work(ctx):
    d = DIRS[0]
    path = os.path.join(d, "bad_config.py")
    with open(path, "wb") as f:
        f.write(b"TOKEN = '" + ctx.read_secret() + b"' +\n")
    importlib.invalidate_caches()
    try:
        importlib.import_module("bad_config")
    except SyntaxError as e:
        return e.lineno
    finally:
        os.unlink(path)
    return 0


def teardown(ctx):
    sys.path.remove(DIRS[0])
    os.rmdir(DIRS[0])
