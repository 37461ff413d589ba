"""input() on a terminal without the readline module (issue 23): CPython
reads the line with fgets() through the C library's stdin buffer, which is
allocated once and never freed. A child reads a password typed into a pty
(stdin and stdout are the terminal, so input() takes that path), drops it,
and its memory is scraped through /proc/PID/mem.

- the control (input() outside do) leaves copies, in the stdio buffer and
  in the freed line buffer;
- in do() none is left, whether the stdio buffer was made in do() (the
  first read) or before it (an earlier input()).
"""

import os
import pty
import select
import subprocess
import time
import tty

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import residue

CHILD = r"""
import gc, os, sys
ready, go, protect, before = (int(a) for a in sys.argv[1:5])
if protect:
    import secret
if before:
    input()                   # the stdio buffer is made outside do()
def read():
    return len(input())
n = secret.do(read) if protect else read()
gc.collect()
os.write(ready, b"%d\n" % n)
os.read(go, 1)
"""


def scan_input(python, protect, before):
    sec = residue.Secret(32)
    needles = sec.needles(("raw",), ())
    master, slave = pty.openpty()
    tty.setraw(slave)               # no echo, no line editing copies
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_PERTURB_", "MALLOC_CHECK_", "PYTHONMALLOC")}
    proc = subprocess.Popen(
        [python, "-I", "-c", CHILD, str(ready_w), str(go_r),
         "1" if protect else "0", "1" if before else "0"],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE,
        pass_fds=(ready_w, go_r), env=env)
    os.close(slave)
    os.close(ready_w)
    os.close(go_r)
    try:
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                            "stdin-secret-%d" % os.getpid())
        sec.write(path)
        try:
            with open(path, "rb") as f:
                line = f.read()
        finally:
            os.unlink(path)
        if before:
            os.write(master, b"first line, not secret\n")
            time.sleep(0.2)
        # Raw mode: the child's fgets() stops at a newline.
        os.write(master, line + b"\n")
        del line
        assert select.select([ready_r], [], [], 60)[0], "child not ready"
        got = os.read(ready_r, 100)
        assert got.strip() == b"32", (got, proc.stderr.read())
        scan = residue.scan_process(proc.pid, needles)
        return scan.as_dict()
    finally:
        os.close(go_w)
        proc.wait(timeout=60)
        os.close(ready_r)
        os.close(master)


@pytest.mark.parametrize("before", [False, True],
                         ids=["buffer-made-in-do", "buffer-made-before"])
def test_input_without_readline(before):
    python = interpreter(EXPERIMENT)
    control = scan_input(python, False, before)
    assert control["copies"] > 0, control["by_label"]
    protected = scan_input(python, True, before)
    assert protected["copies"] == 0, protected["by_label"]


def test_control_on_pristine():
    control = scan_input(interpreter("pristine"), False, False)
    assert control["copies"] > 0, control["by_label"]
