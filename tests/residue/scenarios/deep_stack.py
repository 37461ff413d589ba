"""C stack: HMAC at the bottom of a deep C call chain (map -> lambda)."""

import hmac

DEPTH = 200
DERIVED = (("hmac", "sha256", b"deep"),)
CONTROL_FORMS = ("hmac",)
CONTROL_WHERE = ("stack:main",)
NEEDS = ("heap", "c_stack")


def down(n, f):
    # Each level goes through C (map calls the lambda), so it costs C
    # stack: the digest _hashlib writes into a local buffer at the bottom
    # lies below anything the shallower code that runs later touches.
    if n == 0:
        return f()
    return list(map(lambda _: down(n - 1, f), (0,)))[0]


def work(ctx):
    key = ctx.read_secret()
    return len(down(DEPTH, lambda: hmac.digest(key, b"deep", "sha256")))
