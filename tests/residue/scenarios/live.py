"""Live: the result is kept on purpose, so copies must be found.

Proves the scanner sees a secret that is really there.
"""

KEEP = True
CONTROL_FORMS = ("raw", "ucs2")


def work(ctx):
    s = ctx.read_text()
    return {"token": s, "raw": s.encode(), "wide": s + "\u20ac"}
