"""Regression cases from an attack review of the exact C-stack erasure
(spec §3.2): each child in tests/stack_review/ broke the first version
(a crash, another thread's memory overwritten, or func's bytes left), and
each runs with a control: the same program without secret.do (or with the
condition that triggered the bug removed)."""

import os
import resource
import subprocess
import sys

import pytest

import secret

pytestmark = pytest.mark.skipif(not secret.supported(),
                                reason="fallback mode erases nothing")

HERE = os.path.join(os.path.dirname(__file__), "stack_review")


def child(script, *args, rlimit_stack=None, timeout=300):
    def pre():
        if rlimit_stack is not None:
            resource.setrlimit(resource.RLIMIT_STACK,
                               (rlimit_stack, resource.RLIM_INFINITY))
    r = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                       capture_output=True, text=True, timeout=timeout,
                       preexec_fn=pre if rlimit_stack else None)
    return r


def ok(script, *args, **kw):
    r = child(script, *args, **kw)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    return r.stdout


def last_int(out):
    return int(out.split()[-1])


def test_trim_never_leaves_free_address_space_in_a_stack():
    # Another interpreter (own GIL) maps and unmaps while a thread's deep
    # do() calls trim its stack: the first version replaced its mappings.
    assert "survived" in ok("trim_race_subinterp_mmap.py", "protected", "4")
    assert "survived" in ok("trim_race_subinterp_mmap.py", "control", "2")


def test_stack_larger_than_rlimit_keeps_its_hole_guarded():
    out = ok("rlimit_hole.py", "protected")
    assert "inside the thread's stack" in out and "): []" in out, out
    assert "bytes read: ok" in out


@pytest.mark.parametrize("mode", ["control", "protected"])
def test_rlimit_stack_lowered_at_run_time(mode):
    out = ok("rlimit_lowered_crash.py", mode)
    assert out.strip().endswith("[]"), out


@pytest.mark.parametrize("mode", ["control", "protected"])
def test_rlimit_stack_below_8_mib(mode):
    out = ok("rlimit_small_crash.py", mode, rlimit_stack=2 << 20)
    assert "6 MiB deep: ok" in out


def test_no_register_leftovers_on_the_alternate_stack():
    control = last_int(ok("altstack_race.py", "control", "300"))
    assert control > 0
    assert last_int(ok("altstack_race.py", "protected", "300")) == 0


def test_main_thread_bounds_without_file_descriptors():
    out = ok("no_proc_bounds.py", "fd-exhausted")
    control, protected = int(out.split()[3]), last_int(out)
    assert control > 0 and protected == 0, out


def test_rlimit_stack_raised_after_the_first_do():
    control = int(ok("main_rlimit_raise.py", "control").split()[6])
    assert control > 0
    out = ok("main_rlimit_raise.py", "protected")
    assert int(out.split()[6]) == 0, out


def test_fork_child_gets_its_lost_threads_stacks_back():
    assert ok("fork_cached_stack.py", "protected").strip().endswith(
        "exit code 0")


def test_own_alternate_stack_erased_after_faulthandler_replaces_it():
    assert int(ok("altstack_replaced.py", "nodo").split()[11]) > 0
    assert int(ok("altstack_replaced.py", "replace").split()[11]) == 0


def test_no_thread_end_key_no_reserve():
    out = ok("key_exhaust.py", "protected")
    assert "callback ok" in out and out.strip().endswith("with: []"), out
