"""Child side of the residue scanner (scripts/residue.py).

    python3 -I harness.py SCENARIO.py MODE SECRET_FILE READY_FD GO_FD

MODE is control or protected.

Runs one scenario: setup() outside any protection, then main() (by default
``ctx.protect(work, ctx)``: a plain call in control mode, ``secret.do`` in
protected mode), drops the result unless the scenario keeps it, runs
teardown() and gc.collect(), writes one JSON line to READY_FD (where the
alternate signal stack and the threads are) and blocks reading GO_FD while
the parent scans. Exit status 3: protected mode asked of an interpreter
without `secret`; 5: a module the scenario REQUIRES is missing (nothing
run).

The secret exists in this process only where the scenario's own code puts
it: it is read from SECRET_FILE inside work() (ctx.read_secret), and
nothing sent to the parent contains it (errors are reported by type and
stack only, never by message).
"""

import gc
import importlib.util
import json
import os
import sys
import threading
import traceback

try:
    import ctypes
except ImportError:  # an interpreter built without _ctypes
    ctypes = None


class Context:
    """What a scenario gets. Only `state` is meant to be written to, and
    only outside work(): anything work() stores in a container made before
    it ran is a documented limitation (spec §3.5), not a scenario."""

    def __init__(self, secret_path, mode, protect):
        self.secret_path = secret_path
        self.mode = mode
        self.protect = protect
        self.kept = None
        self.state = {}

    def read_secret(self):
        """The secret as bytes, read from the file now. One read of the
        exact size, so the bytes object returned is the only copy made."""
        fd = os.open(self.secret_path, os.O_RDONLY)
        try:
            return os.read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def read_text(self):
        """The secret as an ASCII str."""
        return self.read_secret().decode("ascii")

    def keep(self, obj):
        """Keep obj alive until the scan (the `live` scenario)."""
        self.kept = obj


def _altstack_query():
    """Return a function reporting this thread's sigaltstack, made now so
    that calling it later allocates next to nothing."""
    if ctypes is None:
        return lambda: None

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                    ("ss_size", ctypes.c_size_t)]

    libc = ctypes.CDLL(None, use_errno=True)
    ss = StackT()
    ref = ctypes.byref(ss)

    def query():
        if libc.sigaltstack(None, ref) != 0 or ss.ss_flags & 2:  # SS_DISABLE
            return None
        return [ss.ss_sp or 0, ss.ss_size]

    return query


def _secret_heap_ranges():
    """Address ranges of the secret heap, from secret.heap_info() in a
    build that has one (none before the first do(), or in fallback mode)."""
    mod = sys.modules.get("_secret")
    info = getattr(mod, "heap_info", None)
    if info is None:
        return []
    d = info()
    if not d.get("reserved"):
        return []
    return [[int(d["base"]), int(d["base"]) + int(d["reserved"])]]


def _load(path):
    spec = importlib.util.spec_from_file_location(
        "residue_scenario", path)
    mod = importlib.util.module_from_spec(spec)
    # Registered like any imported module: its state outlives the run.
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _default_main(mod):
    def main(ctx):
        result = ctx.protect(mod.work, ctx)
        if getattr(mod, "KEEP", False):
            ctx.keep(result)
    return main


def _report(fd, obj):
    os.write(fd, (json.dumps(obj) + "\n").encode())


def main(argv):
    path, mode, secret_path, ready, go = argv
    ready, go = int(ready), int(go)
    protected = mode == "protected"
    secret_mod = None
    try:
        import secret as secret_mod
    except ImportError:
        if protected:
            _report(ready, {"ok": False, "error": "no-secret-module"})
            return 3
    protect = secret_mod.do if protected else (lambda f, *a: f(*a))
    mod = _load(path)
    missing = [m for m in getattr(mod, "REQUIRES", ())
               if importlib.util.find_spec(m) is None]
    if missing:
        _report(ready, {"ok": False, "error": "missing-module",
                        "missing": missing})
        return 5
    ctx = Context(secret_path, mode, protect)
    query = _altstack_query()
    run = getattr(mod, "main", None) or _default_main(mod)
    error = None
    try:
        if hasattr(mod, "setup"):
            mod.setup(ctx)
        run(ctx)
        if hasattr(mod, "teardown"):
            mod.teardown(ctx)
    except BaseException as e:
        # Type and stack only: the message may hold the secret.
        error = "%s\n%s" % (type(e).__name__,
                            "".join(traceback.format_tb(e.__traceback__)))
    run = mod = None
    gc.collect()
    if error:
        _report(ready, {"ok": False, "error": error})
        return 4
    threads = {str(t.native_id): t.name for t in threading.enumerate()
               if t.native_id is not None}
    _report(ready, {
        "ok": True,
        "pid": os.getpid(),
        "secret_module": secret_mod is not None,
        "protected": protected,
        "altstack": [s for s in [query()] if s],
        "secret_heap": _secret_heap_ranges(),
        "threads": threads,
    })
    # Block until the parent has scanned (it writes a byte or closes).
    os.read(go, 1)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
