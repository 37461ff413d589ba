#!/usr/bin/env python3
"""Instructions of buffered and text I/O (patch 0016), counted with
valgrind --tool=callgrind (PYTHONHASHSEED=0):

  python3 scripts/callgrind_io.py

Each work uses file objects made before it (as sys.stdin and sys.stdout
are) and runs 5 times; a run of 0 times is subtracted, so start-up,
imports and the file set-up are left out. Prints, per work, the
instructions of pristine and of the experiment outside do() (what the
hooks cost ordinary code) and of the experiment with each run inside
do() (what the move into the secret heap and the zeroing cost).
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from callgrind_in_do import instructions  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = os.path.join(ROOT, "cpython-build", "install")

CHILD = r"""
import os, sys
work, mode, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
binary = open(path, "rb")
text = open(path, "r", encoding="ascii")
out = open(os.devnull, "w", encoding="ascii")
line = "x" * 60 + "\n"

def lines_binary():
    binary.seek(0)
    return sum(1 for _ in iter(binary.readline, b""))

def lines_text():
    text.seek(0)
    return sum(1 for _ in iter(text.readline, ""))

def write_text():
    for _ in range(10000):
        out.write(line)
    out.flush()

fn = {"lines_binary": lines_binary, "lines_text": lines_text,
      "write_text": write_text}[work]

if mode == "do":
    import secret
    # Outside the count (the 0-times run does it too): the heap's
    # reservation, and under valgrind (no mlock2) its partial-lock warning.
    secret.do(int)

def loop():
    if mode == "do":
        for _ in range(n):
            secret.do(fn)
    else:
        for _ in range(n):
            fn()

# In a thread: valgrind maps the main thread's stack only near its stack
# pointer, and do() reads and zeroes below its frame as deep as the work
# went (docs/erasure.md); a thread's stack is mapped whole.
import threading
t = threading.Thread(target=loop)
t.start()
t.join()
"""

WORKS = ("lines_binary", "lines_text", "write_text")


def count(python, path, *args):
    return instructions(python, CHILD, *args, path)


def main():
    pristine = os.path.join(INSTALL, "pristine", "bin", "python3")
    experiment = os.path.join(INSTALL, "experiment", "bin", "python3")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        # 10 000 lines of 61 bytes: 610 KB, read through an 8 KiB buffer.
        f.write(("y" * 60 + "\n") * 10000)
        f.flush()
        for w in WORKS:
            n = {}
            for label, py, mode in (("pristine", pristine, "plain"),
                                    ("experiment", experiment, "plain"),
                                    ("experiment in do", experiment, "do")):
                n[label] = (count(py, f.name, w, mode, "5")
                            - count(py, f.name, w, mode, "0"))
            print("%-13s pristine %d, experiment %d (%.4fx), in do %d "
                  "(%.4fx of experiment outside)"
                  % (w, n["pristine"], n["experiment"],
                     n["experiment"] / n["pristine"], n["experiment in do"],
                     n["experiment in do"] / n["experiment"]))


if __name__ == "__main__":
    main()
