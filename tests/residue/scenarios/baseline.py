"""Baseline: read the secret and drop it.

What reading alone leaves: the reference for every other scenario.
"""


def work(ctx):
    return len(ctx.read_secret())
