"""A csv reader made before do() (it read its header row then) reads a
row with the secret in do(); the reader stays."""

import csv

LINES = []
KEEP = []


def setup(ctx):
    r = csv.reader(LINES_ITER)
    LINES.append("name,value\r\n")
    next(r)
    KEEP.append(r)


class _Lines:
    def __iter__(self):
        return self

    def __next__(self):
        return LINES.pop(0)


LINES_ITER = _Lines()


def work(ctx):
    LINES.append("token," + ctx.read_text() + "\r\n")
    return len(next(KEEP[0]))
