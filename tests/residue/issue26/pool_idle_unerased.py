"""pool_idle with the idle points' erasure turned off (_testsecret): the
control that the scan finds what the worker's stack keeps when it is not
erased. Its protected run must find copies (tests/test_residue_issue26.py);
it is not one of the scanner's scenarios."""

import hmac
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _idle  # noqa: E402

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("hmac",)
NEEDS = ("heap", "c_stack")
POOLS = []


def setup(ctx):
    try:
        import _testsecret
        _testsecret.idle_erase(False)
    except (ImportError, AttributeError):
        pass


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
