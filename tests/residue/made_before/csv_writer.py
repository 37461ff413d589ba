"""A csv writer made before do() (it wrote its header row then) writes a
row with the secret in do(); the writer and its file stay open."""

import csv
import os

KEEP_OPEN = []


def setup(ctx):
    f = open(os.devnull, "w", newline="")
    w = csv.writer(f)
    w.writerow(["name", "value"])
    KEEP_OPEN.extend([f, w])


def work(ctx):
    KEEP_OPEN[1].writerow(["token", ctx.read_text()])
    return 1
