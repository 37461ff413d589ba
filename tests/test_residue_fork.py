"""fork() from a process whose threads hold cached secret blocks (spec
§3.4): the per-thread cache keeps small blocks freed in secret mode, zeroed,
for the thread to use again. A fork() child gets a copy of every cache: the
forking thread's (its own in the child) and the other threads' (lost in the
child, whose only thread is the forking one). A child forked after do()
returned is scraped through /proc/PID/mem, as the residue scanner does.

- the control (the same work outside do) leaves copies in the child;
- in do() none is left, whether the child forked from the thread whose
  cache holds the blocks or from another thread while that one waits with
  its cache full; and the cache did hold blocks (counted in the child, or
  in the parent for another thread's cache), so the test is of the cache.

No thread is inside do() at the fork (a fork during another thread's do()
is a documented limitation).
"""

import os
import select
import subprocess

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import residue

CHILD = r"""
import gc, json, os, sys, threading
path, protect, where = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
keep = sys.argv[6] == "1"
kept = []
ready, go = int(sys.argv[4]), int(sys.argv[5])
if protect:
    import secret
else:
    secret = None

def work():
    # Small objects made from the key (each under 256 bytes: cacheable),
    # then dropped: a bytes, its hex and base64 forms, slices, a str.
    import base64
    with open(path, "rb") as f:
        key = f.read()
    forms = [key, key.hex(), base64.b64encode(key), key.decode("latin-1")]
    forms += [key[i:] for i in range(0, 32, 4)]
    forms += [bytes(key) + b"." for _ in range(8)]
    if keep:
        kept.append(forms)      # the control of the scan: live blocks
    return sum(len(x) for x in forms)

def info():
    if secret is None:
        return {}
    h = secret.heap_info()
    return {"cached": h["cached_bytes"], "live": h["live_blocks"],
            "range": [h["base"], h["base"] + h["reserved"]]}

def run_work():
    n = secret.do(work) if protect else work()
    gc.collect()
    return n

def child_side():
    # The child: report and wait for the scan.
    gc.collect()
    os.write(ready, (json.dumps({"pid": os.getpid(), "child": info()})
                     + "\n").encode())
    os.read(go, 1)
    os._exit(0)

parent = {}
done, end = threading.Event(), threading.Event()

def owner():
    parent["n"] = run_work()
    parent["owner_cache"] = info()
    if where == "owner":
        if os.fork() == 0:
            child_side()
    done.set()
    end.wait()

t = threading.Thread(target=owner)
t.start()
done.wait()
if where == "other":
    parent["before_fork"] = info()
    if os.fork() == 0:
        child_side()
os.write(ready, (json.dumps({"parent": parent}) + "\n").encode())
end.set()
t.join()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _lines(fd, n, timeout=60):
    got = b""
    while got.count(b"\n") < n:
        assert select.select([fd], [], [], timeout)[0], "child not ready"
        chunk = os.read(fd, 4096)
        assert chunk, got
        got += chunk
    import json
    return [json.loads(x) for x in got.decode().splitlines()]


def scan_fork_child(python, protect, where, keep=False):
    sec = residue.Secret(32)
    needles = sec.needles(("raw", "hex", "base64"), ())
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        "fork-secret-%d" % os.getpid())
    sec.write(path)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_PERTURB_", "MALLOC_CHECK_", "PYTHONMALLOC")}
    proc = subprocess.Popen(
        [python, "-I", "-c", CHILD, path, "1" if protect else "0", where,
         str(ready_w), str(go_r), "1" if keep else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=(ready_w, go_r), env=env)
    os.close(ready_w)
    os.close(go_r)
    try:
        msgs = _lines(ready_r, 2)
        os.unlink(path)
        child = next(m for m in msgs if "pid" in m)
        parent = next(m for m in msgs if "parent" in m)["parent"]
        assert parent["n"] > 0
        ranges = [tuple(child["child"]["range"])] if protect else ()
        scan = residue.scan_process(child["pid"], needles,
                                    secret_ranges=ranges).as_dict()
        return scan, child["child"], parent
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.close(go_w)
        out, err = proc.communicate(timeout=60)
        os.close(ready_r)
        assert proc.returncode == 0, err.decode(errors="replace")


@pytest.mark.parametrize("where", ["owner", "other"],
                         ids=["fork-from-cache-owner", "fork-from-other"])
def test_fork_child_of_cached_blocks(where):
    python = interpreter(EXPERIMENT)
    control, _, _ = scan_fork_child(python, False, where)
    assert control["copies"] > 0, control["by_label"]
    # The scan reads the child's secret heap: blocks held live are found.
    live, _, _ = scan_fork_child(python, True, where, keep=True)
    assert live["by_label"].get("secret-heap"), live["by_label"]
    for attempt in range(3):
        protected, child, parent = scan_fork_child(python, True, where)
        assert protected["copies"] == 0, protected["by_label"]
        # What is tested is there: the blocks do() freed were cached.
        assert parent["owner_cache"]["cached"] > 0, parent
        if where == "owner":
            assert child["cached"] > 0, child
        else:
            assert parent["before_fork"]["cached"] > 0, parent
