"""Run CPython's own tests inside secret.do() (scripts/regrtest_compare.py
--in-do, tests/test_cpython_tests_in_do.py).

Both put this directory on PYTHONPATH and set
RUNTIMESECRET_REGRTEST_IN_DO=1. In a regrtest worker process (python -m
test.libregrtest.worker) every unittest test case then runs, its setUp and
tearDown included, as secret.do(TestCase.run, test, result): all it
allocates comes from the secret heap and is zeroed when freed, free lists
are bypassed, realloc moves blocks into the heap, the frames and the C
stack it used are erased when it returns, and its cyclic garbage is
collected then. Doctests run by a test module are DocTestCases: inside
too. setUpClass/setUpModule, the event loop an IsolatedAsyncioTestCase
makes around its test, and the worker's own code stay outside.

Any other process that sees PYTHONPATH (the regrtest main process, the
subprocesses tests start) imports this module and does nothing.
"""

import os
import sys


def _in_worker():
    argv = getattr(sys, "orig_argv", ())
    return "test.libregrtest.worker" in argv


def _install():
    import functools
    import unittest
    import secret

    if not secret.supported():
        raise SystemExit("regrtest --in-do: this interpreter has no "
                         "erasure (secret.supported() is False)")
    run = unittest.TestCase.run

    class RunInDo:
        # test.run(result) is secret.do(run, test, result) through a C
        # partial: no Python frame of ours on the stack, so warnings'
        # stacklevel and tracebacks see what they see outside do.
        def __get__(self, test, cls=None):
            if test is None:
                return run
            return functools.partial(secret.do, run, test)

    unittest.TestCase.run = RunInDo()


if os.environ.get("RUNTIMESECRET_REGRTEST_IN_DO") == "1" and _in_worker():
    _install()
