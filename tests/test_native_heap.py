"""Native memory (spec §3.4, issue 23): while a thread is in secret mode,
malloc and its kin called by any code of the process are served from the
secret heap and zeroed when freed; free, realloc and malloc_usable_size of a
secret block work from any thread, in or out of secret mode; outside secret
mode the C library's allocator serves as before.

Each case runs in a child (glibc keeps freed blocks there: MALLOC_PERTURB_
unset) through ctypes, which calls what the process binds the names to, as
any extension or library does; C threads come from tests/native/
malloc_probe.c. Each has a control: the same steps outside do() leave the
data (or an ordinary block) behind, so the case can fail.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import secret
from conftest import ASAN

if ASAN:
    pytest.skip("ASan's malloc takes the C library's place: the native heap "
                "is off (test_api checks that protections() says so)",
                allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "native", "malloc_probe.c")
PRELUDE = "import json, os, sys, ctypes, secret\nimport native_probe as N\n"


@pytest.fixture(scope="module")
def probe_so(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("probe") / "malloc_probe.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", SRC, "-o", out,
                    "-lpthread"], check=True)
    return out


def child_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_PERTURB_", "MALLOC_CHECK_", "PYTHONMALLOC",
                        "LD_PRELOAD")}
    env["PYTHONPATH"] = HERE
    # Large freed glibc blocks stay mapped, so the controls can read them.
    env["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)
    env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 30)
    env.update({k: v for k, v in extra.items() if v is not None})
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
    return env


def run(code, probe=None, args=(), python=sys.executable, xopts=(),
        **env):
    argv = [python, *xopts, "-c", PRELUDE + textwrap.dedent(code)]
    if probe:
        argv.append(probe)
    argv.extend(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env=child_env(**env))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


ALIGN = {"memalign": 256, "aligned_alloc": 256, "posix_memalign": 256,
         "valloc": 4096, "pvalloc": 4096}

EACH_FUNCTION = """
    kind, free_in_do = sys.argv[1], sys.argv[2] == "1"
    align = int(sys.argv[3])
    N.T.hold_decommits(True)    # a page given back would read as zeros
    secret.protections()
    data = N.pattern(4096)
    buf = bytearray(4096)
    out = {}
    for where in ("inside", "outside"):
        def make():
            p = N.alloc(kind, 4096, align)
            N.fill(p, data)
            return p
        p = secret.do(make) if where == "inside" else make()
        rec = {"secret": N.is_secret(p), "aligned": p % align == 0,
               "usable": N.LIBC.malloc_usable_size(p)}
        if free_in_do:
            secret.do(N.LIBC.free, p)
        else:
            N.LIBC.free(p)
        rec["hits"] = N.hits(p, data, buf)
        out[where] = rec
    print(json.dumps(out))
"""


@pytest.mark.parametrize("pymalloc", [None, "malloc"])
@pytest.mark.parametrize("free_in_do", [False, True])
@pytest.mark.parametrize("kind", ["malloc", "calloc", "realloc",
                                  "reallocarray", "memalign",
                                  "aligned_alloc", "posix_memalign",
                                  "valloc", "pvalloc"])
def test_each_function_in_and_out_of_do(kind, free_in_do, pymalloc):
    align = ALIGN.get(kind, 16)
    r = run(EACH_FUNCTION, args=(kind, "1" if free_in_do else "0",
                                 str(align)), PYTHONMALLOC=pymalloc)
    inside, outside = r["inside"], r["outside"]
    assert inside["secret"] and inside["aligned"], inside
    assert inside["usable"] >= 4096, inside
    assert inside["hits"] == 0, inside
    # The control: glibc's block, whose data its free leaves.
    assert not outside["secret"] and outside["aligned"], outside
    assert outside["usable"] >= 4096, outside
    assert outside["hits"] > 100, outside


def test_cross_thread_free_and_realloc_by_c_threads(probe_so):
    r = run("""
        N.T.hold_decommits(True)
        secret.protections()
        data = N.pattern(8192)
        buf = bytearray(8192)
        out = {}
        for where in ("inside", "outside"):
            def make():
                p = N.LIBC.malloc(8192)
                N.fill(p, data)
                return p
            mk = (lambda: secret.do(make)) if where == "inside" else make
            # free on a C thread, outside secret mode
            p = mk()
            assert N.PROBE.free_in_pthread(p) == 0
            out[where + "_free"] = N.hits(p, data, buf)
            out[where + "_secret"] = N.is_secret(p)
            # realloc on a C thread: a secret block stays secret, and the
            # copy it leaves is zeroed
            p = mk()
            q = N.PROBE.realloc_in_pthread(p, 300000)
            # read first: heap_info() (fopen) would reuse the freed block
            out[where + "_realloc_old"] = N.hits(p, data, buf)
            out[where + "_realloc_secret"] = N.is_secret(q)
            out[where + "_realloc_kept"] = ctypes.string_at(q, 8192) == data
            out[where + "_realloc_moved"] = q != p
            N.PROBE.free_in_pthread(q)
        # a C thread's malloc while this thread is in do: ordinary
        out["pthread_in_do"] = secret.do(
            lambda: N.is_secret(N.PROBE.malloc_in_pthread(100)))
        print(json.dumps(out))
    """, probe=probe_so)
    assert r["inside_secret"] and r["inside_free"] == 0, r
    assert r["inside_realloc_secret"] and r["inside_realloc_kept"], r
    assert r["inside_realloc_moved"] and r["inside_realloc_old"] == 0, r
    # controls
    assert not r["outside_secret"] and r["outside_free"] > 100, r
    assert not r["outside_realloc_secret"] and r["outside_realloc_kept"], r
    assert r["outside_realloc_moved"] and r["outside_realloc_old"] > 100, r
    assert r["pthread_in_do"] is False, r


def test_threads_outside_do_stay_ordinary_while_another_is_in_it(probe_so):
    """A C thread and a Python thread started before do() allocate all the
    while another thread is in do(): none of their blocks is secret. The
    positive control: a thread started inside do() (it inherits the mode)
    and do's own thread, in the same window, get only secret blocks."""
    r = run("""
        import threading, time
        base, size = N.heap_range() if secret.protections() else (0, 0)
        c = N.PROBE.churn_start(base, size)
        stop = threading.Event()
        seen = {"py_before": [0, 0], "py_inside": [0, 0], "do": [0, 0]}
        def churn(key):
            while not stop.is_set():
                for kind in N.KINDS:
                    p = N.alloc(kind, 100 + seen[key][0] % 3000)
                    seen[key][0] += 1
                    seen[key][1] += N.is_secret(p)
                    N.LIBC.free(p)
        before = threading.Thread(target=churn, args=("py_before",))
        before.start()
        time.sleep(0.05)
        def work():
            t = threading.Thread(target=churn, args=("py_inside",))
            t.start()
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                p = N.LIBC.malloc(64 + seen["do"][0] % 5000)
                seen["do"][0] += 1
                seen["do"][1] += N.is_secret(p)
                N.LIBC.free(p)
            stop.set()
            t.join()
        secret.do(work)
        before.join()
        s = ctypes.c_long()
        n = N.PROBE.churn_stop(c, ctypes.byref(s))
        seen["c_before"] = [n, s.value]
        print(json.dumps(seen))
    """, probe=probe_so)
    for key in ("c_before", "py_before"):
        made, secret_ = r[key]
        assert made > 100 and secret_ == 0, (key, r)
    for key in ("py_inside", "do"):
        made, secret_ = r[key]
        assert made > 100 and secret_ == made, (key, r)


GENERATED = """
    import random
    seed, n_ops, protect = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rnd = random.Random(seed)
    N.T.hold_decommits(True)
    secret.protections()
    base0 = secret.heap_info()["live_blocks"]
    SIZES = [0, 1, 16, 24, 100, 512, 600, 4096, 5000, 70000, 300000]
    blocks = {}          # id -> [addr, size, secret, data]
    stats = {"ops": 0, "moved_secret": 0, "old_left": 0, "old_checked": 0,
             "bad_content": 0, "bad_secret": 0, "bad_usable": 0,
             "moves_ordinary": 0, "ordinary_left": 0}
    scratch = bytearray(300000)

    def pick_size():
        s = rnd.choice(SIZES)
        return s if s < 16 else rnd.randint(s // 2, s)

    def call(fn, in_do):
        if in_do and protect == "1":
            return secret.do(fn)
        return fn()

    for i in range(n_ops):
        stats["ops"] += 1
        op = rnd.random()
        in_do = rnd.random() < 0.5
        if op < 0.3 or not blocks:
            n = pick_size()
            data = N.pattern(n)
            def make():
                p = N.LIBC.malloc(n)
                N.fill(p, data)
                return p
            p = call(make, in_do)
            blocks[i] = [p, n, in_do and protect == "1", data]
            if N.is_secret(p) != blocks[i][2]:
                stats["bad_secret"] += 1
        elif op < 0.85:
            k = rnd.choice(list(blocks))
            p, n, sec, data = blocks[k]
            m = pick_size()
            if m == 0:
                m = 1          # realloc(p, 0) frees: tested apart
            q = call(lambda: N.LIBC.realloc(p, m), in_do)
            want_secret = sec or (in_do and protect == "1")
            if N.is_secret(q) != want_secret:
                stats["bad_secret"] += 1
            keep = min(n, m)
            if ctypes.string_at(q, keep) != data[:keep]:
                stats["bad_content"] += 1
            if N.LIBC.malloc_usable_size(q) < m:
                stats["bad_usable"] += 1
            if q != p and n >= 64:
                left = N.hits(p, data, memoryview(scratch)[:n])
                if want_secret:
                    stats["moved_secret"] += 1
                    stats["old_checked"] += 1
                    stats["old_left"] += left > 0
                else:
                    stats["moves_ordinary"] += 1
                    stats["ordinary_left"] += left > 0
            new = data[:keep] + N.pattern(m - keep)
            if m > keep:
                ctypes.memmove(q + keep, new[keep:], m - keep)
            blocks[k] = [q, m, want_secret, new]
        else:
            k = rnd.choice(list(blocks))
            p, n, sec, data = blocks.pop(k)
            if rnd.random() < 0.1 and N.PROBE is not None:
                N.PROBE.free_in_pthread(p)
            else:
                call(lambda: N.LIBC.free(p), in_do)
            if sec and n >= 64:
                stats["old_checked"] += 1
                stats["old_left"] += N.hits(
                    p, data, memoryview(scratch)[:n]) > 0
    for p, n, sec, data in blocks.values():
        N.LIBC.free(p)
    # Drop every object made in do() too (the addresses it returned).
    import gc
    blocks.clear()
    p = q = k = None
    gc.collect()
    stats["live_after"] = secret.heap_info()["live_blocks"] - base0
    print(json.dumps(stats))
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_realloc_across_the_boundary_generated(probe_so, seed):
    """Thousands of generated malloc/realloc/free steps, each in do() or
    not, some freed on C threads: a block is secret exactly when it was
    made or last reallocated in do(), or was secret before; its content
    survives every realloc; malloc_usable_size covers what was asked; the
    copy a moving realloc leaves, and a freed secret block, read zero; the
    heap's live blocks are back where they were."""
    r = run(GENERATED, probe=probe_so, args=(str(seed), "1500", "1"))
    assert r["bad_secret"] == 0 and r["bad_content"] == 0, r
    assert r["bad_usable"] == 0, r
    assert r["old_checked"] > 100 and r["moved_secret"] > 50, r
    assert r["old_left"] == 0, r
    assert r["live_after"] == 0, r
    # The control, the same steps without do(): glibc leaves old copies.
    c = run(GENERATED, probe=probe_so, args=(str(seed), "1500", "0"))
    assert c["bad_secret"] == 0 and c["bad_content"] == 0, c
    assert c["moves_ordinary"] > 50 and c["ordinary_left"] > 10, c


def test_alignment_sizes_and_errors():
    r = run("""
        secret.protections()
        out = {"posix": [], "einval": [], "round": []}
        def case(in_do):
            res = []
            for shift in range(3, 23):
                a = 1 << shift
                err, p = N.posix_memalign(a, 3 * a + 5)
                res.append([a, err, bool(p) and p % a == 0,
                            bool(p) and N.is_secret(p)])
                if p:
                    ctypes.memset(p, 0x41, 3 * a + 5)
                    N.LIBC.free(p)
            bad = [N.posix_memalign(a, 100)[0] for a in (0, 3, 4, 12, 24)]
            # glibc's memalign and aligned_alloc round a non-power of two up
            rounded = []
            for fn in (N.LIBC.memalign, N.LIBC.aligned_alloc):
                p = fn(48, 100)
                rounded.append(bool(p) and p % 64 == 0)
                N.LIBC.free(p)
            return res, bad, rounded
        for in_do in (True, False):
            res = secret.do(case, True) if in_do else case(False)
            out["in" if in_do else "out"] = res
        def edge():
            e = {}
            a, b = N.LIBC.malloc(0), N.LIBC.malloc(0)
            e["malloc0"] = [bool(a), bool(b), a != b, N.is_secret(a)]
            N.LIBC.free(a); N.LIBC.free(b)
            ctypes.set_errno(0)
            e["calloc_overflow"] = [N.LIBC.calloc(1 << 62, 8),
                                    ctypes.get_errno()]
            ctypes.set_errno(0)
            e["reallocarray_overflow"] = [
                N.LIBC.reallocarray(None, 1 << 62, 8), ctypes.get_errno()]
            ctypes.set_errno(0)
            e["pvalloc_huge"] = [N.LIBC.pvalloc(2**64 - 100),
                                 ctypes.get_errno()]
            p = N.LIBC.malloc(100)
            ctypes.set_errno(1234)
            N.LIBC.free(p)
            e["free_keeps_errno"] = ctypes.get_errno()
            e["usable_null"] = N.LIBC.malloc_usable_size(None)
            p = N.LIBC.malloc(100)
            e["realloc0"] = N.LIBC.realloc(p, 0)
            # calloc zeroes what an earlier block left
            for _ in range(50):
                q = N.LIBC.malloc(256); ctypes.memset(q, 0x77, 256)
                N.LIBC.free(q)
            z = N.LIBC.calloc(16, 16)
            e["calloc_zero"] = ctypes.string_at(z, 256) == bytes(256)
            N.LIBC.free(z)
            return e
        out["edge_in"] = secret.do(edge)
        out["edge_out"] = edge()
        print(json.dumps(out))
    """)
    for where in ("in", "out"):
        res, bad, rounded = r[where]
        for a, err, aligned, sec in res:
            if where == "in" and a > (16 << 20):
                continue
            assert err == 0 and aligned, (where, a, err)
            assert sec == (where == "in"), (where, a)
        assert bad == [22] * 5, (where, bad)        # EINVAL
        assert rounded == [True, True], where
    for where in ("edge_in", "edge_out"):
        e = r[where]
        assert e["malloc0"][:3] == [True, True, True], e
        assert e["malloc0"][3] == (where == "edge_in"), e
        assert e["calloc_overflow"] == [None, 12], e            # ENOMEM
        assert e["reallocarray_overflow"] == [None, 12], e
        assert e["pvalloc_huge"] == [None, 12], e
        assert e["free_keeps_errno"] == 1234, e
        assert e["usable_null"] == 0 and e["realloc0"] is None, e
        assert e["calloc_zero"], e


def test_exhaustion_enomem_in_c_memoryerror_in_python():
    r = run("""
        import _sha2
        out = {}
        def big():
            ctypes.set_errno(0)
            p = N.LIBC.malloc(8 << 20)
            e1 = ctypes.get_errno()
            err, q = N.posix_memalign(64, 8 << 20)
            return [p, e1, err, q]
        out["c"] = secret.do(big)
        p = N.LIBC.malloc(8 << 20)      # outside: ordinary memory serves
        out["outside"] = bool(p) and not N.is_secret(p)
        N.LIBC.free(p)
        # HACL*'s state comes from malloc: a failure is the heap's
        # MemoryError
        def hacl():
            N.T.fail_secret_allocations(0, -1)
            try:
                _sha2.sha256(b"x" * 100)
            except MemoryError as e:
                return str(e)
            finally:
                N.T.fail_secret_allocations(-1, -1)
            return None
        out["py"] = secret.do(hacl)
        out["after"] = secret.do(lambda: N.is_secret(N.LIBC.malloc(100)))
        print(json.dumps(out))
    """, xopts=("-X", "secret_heap_size=4M"))
    assert r["c"] == [None, 12, 12, None], r
    assert r["outside"], r
    assert r["py"] and "secret heap exhausted" in r["py"], r
    assert r["after"], r


def test_fork_in_do(probe_so):
    r = run("""
        N.T.hold_decommits(True)
        data = N.pattern(4096)
        buf = bytearray(4096)
        def work():
            p = N.LIBC.malloc(4096)
            N.fill(p, data)
            pid = os.fork()
            if pid == 0:
                # /proc/self/mem opened before the fork is the parent's
                N.MEM = open("/proc/self/mem", "rb", buffering=0)
                ok = ctypes.string_at(p, 4096) == data
                N.LIBC.free(p)
                ok = ok and N.hits(p, data, buf) == 0
                q = N.LIBC.malloc(100)       # the child is in do too
                ok = ok and N.is_secret(q)
                N.LIBC.free(q)
                # a C thread of the child frees a secret block
                r = N.LIBC.malloc(4096)
                N.fill(r, data)
                N.PROBE.free_in_pthread(r)
                ok = ok and N.hits(r, data, buf) == 0
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            return p, status
        p, status = secret.do(work)
        intact = ctypes.string_at(p, 4096) == data
        N.LIBC.free(p)
        print(json.dumps([status, intact, N.hits(p, data, buf)]))
    """, probe=probe_so)
    assert r == [0, True, 0], r


def test_protections_report_native_heap():
    assert secret.protections()["native_heap"] is True
    info = secret.heap_info()
    assert info["native_heap"] is True and info["native_heap_error"] is None
    assert os.path.basename(info["native_allocator"]).startswith("libc.so")
    before = info["native_allocations"]
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    secret.do(lambda: libc.free(libc.malloc(10)))
    assert secret.heap_info()["native_allocations"] > before


PRELOADS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
}


@pytest.mark.parametrize("name", sorted(PRELOADS))
def test_preloaded_allocator_is_reported_not_claimed(probe_so, name):
    """LD_PRELOAD of another allocator: the static interpreter still binds
    the names (the executable comes first), but ordinary memory is then the
    preloaded allocator's, whose own entry points (C++ operator new, its
    extended API) bypass the interposition: protections() says
    native_heap False and heap_info() why. Nothing breaks: blocks of each
    allocator go back to it (a workload of mixed frees and reallocs)."""
    lib = PRELOADS[name]
    assert os.path.exists(lib), "cpython-build/deps.sh installs " + lib
    code = """
        import hashlib, json as J, threading
        info = secret.heap_info()
        prot = secret.protections()
        def work():
            blocks = [N.LIBC.malloc(n) for n in range(1, 3000, 7)]
            doc = J.dumps({"k": list(range(2000))})
            hashlib.sha256(doc.encode()).hexdigest()
            return blocks
        blocks = secret.do(work)
        ordinary = [N.LIBC.malloc(n) for n in range(1, 3000, 7)]
        for p in blocks[::2] + ordinary[::2]:
            N.PROBE.free_in_pthread(p)
        for p in blocks[1::2] + ordinary[1::2]:
            q = N.LIBC.realloc(p, 10000)
            N.LIBC.free(q)
        print(J.dumps([prot["native_heap"], info["native_heap_error"],
                       info["native_allocator"],
                       N.is_secret(blocks[0]),
                       any(N.is_secret(p) for p in ordinary)]))
    """
    r = run(code, probe=probe_so, LD_PRELOAD=lib)
    native, error, allocator, in_do_secret, ordinary_secret = r
    assert native is False, r
    assert os.path.basename(lib) in error and allocator == lib, r
    assert in_do_secret and not ordinary_secret, r
    # The control: without the preload, the same run claims it.
    c = run(code, probe=probe_so)
    assert c[0] is True and c[1] is None, c
    assert c[2].endswith("libc.so.6"), c


SHARED = os.path.join(os.path.dirname(HERE), "cpython-build", "install",
                      "experiment-shared", "bin", "python3")


@pytest.mark.skipif(not os.path.exists(SHARED),
                    reason="the experiment-shared variant is not built "
                           "(ninja -C cpython-build/_meson "
                           "experiment-shared.stamp)")
@pytest.mark.parametrize("kind", ["malloc", "posix_memalign", "pvalloc"])
def test_shared_build(kind, probe_so):
    """--enable-shared: libpython3.13.so defines the names; the python
    executable needs it before the C library, so the process binds them
    there. With a preload the preloaded allocator takes the names."""
    r = run(EACH_FUNCTION, python=SHARED,
            args=(kind, "0", str(ALIGN.get(kind, 16))))
    assert r["inside"]["secret"] and r["inside"]["hits"] == 0, r
    assert not r["outside"]["secret"] and r["outside"]["hits"] > 100, r
    code = """
        print(json.dumps([secret.protections()["native_heap"],
                          secret.heap_info()["native_heap_error"]]))
    """
    assert run(code, python=SHARED) == [True, None]
    lib = PRELOADS["jemalloc"]
    native, error = run(code, python=SHARED, LD_PRELOAD=lib)
    assert native is False and "malloc() is served by" in error, error


def test_glibc_functions_that_allocate():
    """glibc's own functions allocate through the names the process binds
    (Replacing malloc): in do() what they return is secret and their own
    frees (fclose, freeaddrinfo, regfree) go to the right heap. 200 rounds
    of each, blocks made outside do() freed inside and the reverse, no
    crash, nothing secret made outside."""
    r = run(r"""
        import tempfile
        C = N.LIBC
        V, S, CP = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        C.strdup.restype, C.strdup.argtypes = V, [CP]
        C.fopen.restype, C.fopen.argtypes = V, [CP, CP]
        C.fclose.argtypes = [V]
        C.getline.restype = ctypes.c_ssize_t
        C.getline.argtypes = [ctypes.POINTER(V), ctypes.POINTER(S), V]
        C.open_memstream.restype = V
        C.open_memstream.argtypes = [ctypes.POINTER(V), ctypes.POINTER(S)]
        C.fputs.argtypes = [CP, V]
        C.realpath.restype, C.realpath.argtypes = V, [CP, V]
        C.getaddrinfo.argtypes = [CP, CP, V, ctypes.POINTER(V)]
        C.freeaddrinfo.argtypes = [V]
        C.regcomp.argtypes = [V, CP, ctypes.c_int]
        C.regfree.argtypes = [V]
        path = tempfile.mktemp()
        with open(path, "w") as f:
            f.write("line one\nline two\n" * 50)

        def round_():
            got = []
            s = C.strdup(b"a string to copy")
            got.append(s)
            fp = C.fopen(path.encode(), b"r")
            line, cap = V(), S(0)
            while C.getline(ctypes.byref(line), ctypes.byref(cap), fp) > 0:
                pass
            got.append(line.value)
            C.fclose(fp)
            buf, size = V(), S(0)
            ms = C.open_memstream(ctypes.byref(buf), ctypes.byref(size))
            for _ in range(100):
                C.fputs(b"grow the memory stream ", ms)
            C.fclose(ms)
            got.append(buf.value)
            rp = C.realpath(path.encode(), None)
            got.append(rp)
            res = V()
            if C.getaddrinfo(b"localhost", b"80", None,
                             ctypes.byref(res)) == 0:
                got.append(res.value)
                C.freeaddrinfo(res)
                got.pop()
            rx = ctypes.create_string_buffer(256)
            C.regcomp(rx, b"^l(i|o)ne [a-z]+$", 1)
            C.regfree(rx)
            return got

        out = {"in": 0, "in_secret": 0, "out": 0, "out_secret": 0}
        kept = []
        for i in range(200):
            blocks = secret.do(round_)
            out["in"] += len(blocks)
            out["in_secret"] += sum(N.is_secret(b) for b in blocks)
            mine = round_()
            out["out"] += len(mine)
            out["out_secret"] += sum(N.is_secret(b) for b in mine)
            # free each where the other was made
            for b in mine:
                secret.do(N.LIBC.free, b)
            for b in blocks:
                N.LIBC.free(b)
        os.unlink(path)
        print(json.dumps(out))
    """)
    assert r["in"] >= 800 and r["in_secret"] == r["in"], r
    assert r["out"] == r["in"] and r["out_secret"] == 0, r
