"""The fallback of spec §6, forced on x86-64 with ac_cv_secret_supported=no:
do() calls func, nothing claims protection, and nothing is erased (the
same scans that find nothing on the experiment build find the pattern)."""

import os

from conftest import run_python

CHILD = r"""
import os, sys, sysconfig
import secret, _testsecret as T
P = bytes.fromhex(sys.stdin.readline().strip())
assert sysconfig.get_config_var("PY_EXPERIMENTS") == "runtimesecret"
assert not sysconfig.get_config_var("Py_RUNTIMESECRET_SUPPORTED")
assert secret.supported() is False
assert not any(secret.protections().values()), secret.protections()
assert secret.heap_info()["reserved"] == 0
assert secret.do(lambda x, *, y: x + y, 1, y=2) == 3
assert secret.do(secret.enabled) is False
try:
    secret.do(42)
except TypeError:
    pass
else:
    raise AssertionError("non-callable accepted")
_, stack = T.call_and_scan(P, secret.do, T.write_stack_pattern, P, 64 * 1024)
print(stack)
"""


def test_fallback_calls_func_and_erases_nothing():
    p = os.urandom(8).replace(b"\0", b"\1")
    r = run_python("fallback", CHILD, input=p.hex() + "\n")
    # Honest: the pattern is still on the stack after do() returned.
    assert int(r.stdout) > 0
