"""Running a child that plants or leaves the secret, and scanning it while
it waits (its memory, and with core=True a core dump)."""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time

from .coredump import scan_core, take_core
from .maps import Labeler, read_maps, thread_stack_pointers
from .scan import scan_process

class ChildError(RuntimeError):
    pass


def run_child(argv_for, secret, needles, *, core=False, timeout=120,
              env=None, keep_core=None):
    """Start a child, let it plant or leave the secret, scan it.

    argv_for(secret_path, ready_fd, go_fd) returns the child's argv. The
    child reads the secret from secret_path, writes one JSON line to
    ready_fd ({"ok": true, "altstack": [[addr, size]], "threads": {tid:
    name}, "secret_heap": [[lo, hi]]}) and blocks reading go_fd, which
    reaches EOF once the scan is done. A failed child (or one whose first
    line says "ok": false) gives (info, None, None); else the result is
    (info, mem_scan, core_scan or None)."""
    if env is None:
        # Allocator settings of the caller would change what the child
        # leaves: MALLOC_PERTURB_ (set by meson test) scribbles over freed
        # glibc blocks, PYTHONMALLOC picks another allocator.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MALLOC_PERTURB_", "MALLOC_CHECK_",
                            "PYTHONMALLOC", "PYTHONMALLOCSTATS")}
    tmp = tempfile.mkdtemp(prefix="residue-")
    secret_path = os.path.join(tmp, "secret")
    secret.write(secret_path)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_path = os.path.join(tmp, "output")
    proc = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv_for(secret_path, ready_w, go_r),
                                    pass_fds=(ready_w, go_r), stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    cwd=tmp)
        os.close(ready_w)
        os.close(go_r)
        ready_w = go_r = None
        line = _read_line(ready_r, timeout)
        if not line:
            proc.wait(timeout=timeout)
            raise ChildError("child exited (%s) before it was ready:\n%s"
                             % (proc.returncode, _tail(out_path)))
        info = json.loads(line)
        info["returncode"] = None
        if not info.get("ok"):
            proc.wait(timeout=timeout)
            info["returncode"] = proc.returncode
            info["output"] = _tail(out_path)
            return info, None, None
        pid = proc.pid
        threads = info.get("threads") or {}
        altstacks = [tuple(a) for a in info.get("altstack") or ()]
        secret_ranges = [tuple(a) for a in info.get("secret_heap") or ()]
        mem = scan_process(pid, needles, thread_names=threads,
                           altstacks=altstacks, secret_ranges=secret_ranges)
        core_scan = None
        if core:
            core_path = keep_core or os.path.join(tmp, "core")
            take_core(pid, core_path)
            lab = Labeler(read_maps(pid), pid, thread_stack_pointers(pid),
                          threads, altstacks, secret_ranges)
            core_scan = scan_core(core_path, needles, lab, threads)
        os.close(go_w)             # EOF releases every waiting thread
        go_w = None
        proc.wait(timeout=timeout)
        info["returncode"] = proc.returncode
        return info, mem, core_scan
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            if fd is not None:
                os.close(fd)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _read_line(fd, timeout):
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ChildError("child not ready after %ss" % timeout)
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _tail(path, size=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-size:].decode("utf-8", "replace")
