"""A ThreadPoolExecutor made in do() signs a message with the key (HMAC,
the tag searched too) in its worker; the pool is kept, its worker idle
on the pool's queue, when the process is scanned."""

import hmac
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _idle  # noqa: E402

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("hmac",)
# The control must find the tag on the worker's stack: what the erasure
# at its idle point removes.
CONTROL_WHERE = ("stack:thread",)
NEEDS = ("heap", "c_stack")
POOLS = []


def through_c(n, f):
    """f() called n + 1 levels of C calls down (map), as a framework's
    dispatch would: its C frames lie deeper than the worker's wait."""
    return list(map(lambda _: through_c(n - 1, f) if n else f(), [0]))[0]


def sign(ctx):
    key = ctx.read_secret()
    tag = through_c(4, lambda: hmac.digest(key, b"GET /v1/orders",
                                           "sha256"))
    return hmac.compare_digest(tag, hmac.new(key, b"GET /v1/orders",
                                             "sha256").digest())


def work(ctx):
    pool = ThreadPoolExecutor(max_workers=1)
    POOLS.append(pool)
    return pool.submit(sign, ctx).result()


def teardown(ctx):
    for t in POOLS[0]._threads:
        _idle.wait_parked(t.native_id)
