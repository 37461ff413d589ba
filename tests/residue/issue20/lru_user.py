"""A function memoized with functools.lru_cache, defined before do()."""

import functools
import hashlib

NEEDS = ("heap", "caches")
CONTROL_FORMS = ("raw",)


@functools.lru_cache(maxsize=64)
def fingerprint(token):
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def work(ctx):
    return len(fingerprint(ctx.read_text()))
