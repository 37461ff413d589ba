"""The secret heap (spec §3.4): every block allocated in secret mode lives in
one reserved range, is zeroed when freed (whichever thread frees it), is
excluded from core dumps and locked against swap where allowed, and running
out of it raises MemoryError.

Each erasure case has a control: the same steps without secret.do must
find the random data in the freed block, else the case proves nothing.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ASAN

import secret

_testsecret = pytest.importorskip("_testsecret")
T = _testsecret

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "heap_probe.py")

# glibc: keep large freed blocks mapped (below 32 MiB), so the control can
# find them; the secret heap does not depend on it.
GLIBC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
              "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
              # PYTHONMALLOC=mimalloc: never purge freed pages (a purge
              # zeroes them after 10 ms, so a slow control found nothing).
              # The secret heap gives pages back whatever this says
              # (patch 0008); the probe counts its decommits, so that a
              # protected case cannot pass by reading a page given back.
              "MIMALLOC_PURGE_DELAY": "-1"}


def child_env():
    """The environment of a child whose control reads freed glibc blocks."""
    env = dict(os.environ, **GLIBC_KEEP)
    # meson test sets MALLOC_PERTURB_: glibc would then fill freed blocks
    # itself and the control would prove nothing.
    env.pop("MALLOC_PERTURB_", None)
    return env


def run_child(code, protect, **kw):
    """Run code in a child with argv[1] "1" (in do) or "0" (control);
    return its stdout."""
    r = subprocess.run([sys.executable, "-c", code, "1" if protect else "0"],
                       capture_output=True, env=child_env(), timeout=120,
                       **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout


def run_probe(pymalloc=None, *args):
    """Run heap_probe.py under PYTHONMALLOC=pymalloc (None: default);
    args go to the interpreter (e.g. -X tracemalloc=5)."""
    env = child_env()
    env.pop("PYTHONMALLOC", None)
    if pymalloc:
        env["PYTHONMALLOC"] = pymalloc
    r = subprocess.run([sys.executable, *args, PROBE], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


_cache = {}


def probe(pymalloc=None):
    if pymalloc not in _cache:
        _cache[pymalloc] = run_probe(pymalloc)
    return _cache[pymalloc]


SIZES = ["tiny", "pymalloc_64", "pymalloc_256", "pymalloc_512", "gt_512",
         "page", "gt_256k", "mib_4"]
CASES = ([(d, p) for d in ("raw", "mem", "obj")
          for p in ("inside", "after", "thread")]
         + [("bytes", "refcount"), ("bytes", "gc")])


def check(results, size, domain, path, control=True):
    key = "%s/%s/%s" % (size, domain, path)
    c_hits, c_total, c_secret, _ = results["control/" + key]
    p_hits, p_total, p_secret, p_decommits = results["protected/" + key]
    assert c_total > 0 and p_total > 0
    # The control finds the data it freed: the case can fail.
    if control:
        assert c_hits > 0, ("control found nothing", key,
                            results["control/" + key])
    assert not c_secret
    # Protected: the block was secret and nothing of the data is left.
    assert p_secret, key
    assert p_hits == 0, (key, p_hits, p_total)
    # ... because it was zeroed: no page was given back to the kernel
    # (which reads as zeros either way) between its free and the read.
    assert p_decommits == 0, (key, "pages given back: proves nothing")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("domain,path", CASES)
def test_freed_secret_block_is_zero(size, domain, path):
    check(probe(), size, domain, path)


def test_heap_info_and_counters():
    info0 = secret.heap_info()
    keys = {"active", "size", "address_space", "reserved", "base",
            "committed", "peak_committed", "resident", "live_bytes",
            "live_blocks", "zeroed_bytes", "allocations", "frees",
            "exhausted", "trims", "decommits", "locked", "locked_bytes",
            "lockable", "lock_limit", "lock_failures", "lock_error",
            "unlocked_bytes", "unlocked_resident", "dontdump",
            "require_lock", "headroom_blocks"}
    assert keys <= set(info0)
    data = os.urandom(1000)

    def f():
        a = T.alloc_block("mem", data)
        mid = secret.heap_info()
        T.free_block("mem", a)
        return a, mid

    addr, mid = secret.do(f)
    info = secret.heap_info()
    assert info["active"] is True
    assert info["reserved"] == info["address_space"] >= info["size"]
    assert info["committed"] <= info["size"] + (1 << 20)
    assert info["base"] <= addr < info["base"] + info["reserved"]
    assert info["base"] % (32 << 20) == 0
    assert mid["live_blocks"] >= 1
    assert info["zeroed_bytes"] >= info0["zeroed_bytes"] + 1000
    assert info["allocations"] > info0["allocations"]
    assert info["committed"] > 0
    assert info["dontdump"] is True


def test_outside_do_nothing_is_secret():
    secret.do(lambda: None)  # reserved
    info = secret.heap_info()
    lo, hi = info["base"], info["base"] + info["reserved"]
    b = os.urandom(100) + b"x"
    assert not lo <= T.buffer_address(b) < hi
    a = T.alloc_block("raw", b)
    try:
        assert not lo <= a < hi
    finally:
        T.free_block("raw", a)


def smaps_flags(base):
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    flags = []
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= base < hi
        elif inside and line.startswith("VmFlags:"):
            flags = line.split()[1:]
    return flags


def test_smaps_dontdump_and_locked():
    secret.do(lambda: bytes(os.urandom(100)))
    info = secret.heap_info()
    flags = smaps_flags(info["base"])
    assert "dd" in flags, flags
    if info["locked_bytes"]:
        assert "lo" in flags, flags     # base is in the locked prefix
    # Ordinary memory is dumped as before (the control).
    b = os.urandom(1 << 20)
    assert "dd" not in smaps_flags(T.buffer_address(b))


LOCK_CHILD = r"""
import json, os, secret
p = secret.protections()
claim, dump, both = p["no_swap"], p["no_core_dump"], p["no_core_dump_or_swap"]
keep = secret.do(lambda: [bytes(os.urandom(1 << 20)) for _ in range(40)])
info = secret.heap_info()
vmlck = int(open("/proc/self/status").read().split("VmLck:")[1].split()[0])
print(json.dumps(dict(claim=claim, dump=dump, both=both, vmlck=vmlck << 10,
                      **{k: info[k] for k in (
    "reserved", "size", "locked", "locked_bytes", "unlocked_resident",
    "lock_error", "committed", "lockable", "lock_chunk")})))
"""


def run_lock_child(memlock=None, code=LOCK_CHILD, options=()):
    """A child that keeps 40 MiB of secret blocks; with memlock, it starts
    without CAP_IPC_LOCK and with RLIMIT_MEMLOCK lowered to memlock.
    Returns its output (JSON) and its stderr."""
    def limit():
        import ctypes
        import resource
        # PR_CAPBSET_DROP (24) CAP_IPC_LOCK (14): root keeps its other
        # capabilities but locks under the limit, like any user. Fails
        # harmlessly where the capability is not held anyway.
        ctypes.CDLL(None).prctl(24, 14, 0, 0, 0)
        hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        n = memlock if hard == resource.RLIM_INFINITY else min(memlock, hard)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (n, n))
    r = subprocess.run([sys.executable, *options, "-c", code],
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=limit if memlock else None)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def test_swap_claim_follows_the_lock():
    """protections() claims no_swap only when all the secret heap can
    commit is locked (RLIMIT_MEMLOCK covers its size); a partial lock (best
    effort under RLIMIT_MEMLOCK) is reported, heap_info() shows the secret
    memory that may be swapped, and no_core_dump is reported apart: it
    holds without any privilege. Only committed memory is locked: VmLck
    follows what the heap uses, not its size.
    """
    part, err = run_lock_child(memlock=4 << 20)
    assert 0 < part["locked_bytes"] <= 4 << 20, part
    assert part["vmlck"] <= 4 << 20, part
    assert part["lockable"] <= 4 << 20, part
    assert part["lock_error"] == "ENOMEM", part
    assert part["claim"] is False, part
    assert part["both"] is False, part
    assert part["dump"] is True, part
    assert part["locked"] is False, part
    assert part["unlocked_resident"] >= 30 << 20, part
    # ... and not silently: one RuntimeWarning, at the first call.
    assert err.count("RuntimeWarning: secret: only") == 1, err
    assert "may be swapped out" in err, err
    # The control: as this process was started (root here, or a limit the
    # whole heap fits in), the claim follows the same rule.
    full, err = run_lock_child()
    whole = full["locked"]
    assert full["claim"] is whole, full
    assert full["both"] is whole, full
    assert full["dump"] is True, full
    assert (full["unlocked_resident"] == 0) is whole, full
    assert ("RuntimeWarning" not in err) is whole, err
    if has_cap_ipc_lock():
        assert whole, full      # then all of it is locked
        # what is used, not the heap's 1 GiB: 40 MiB kept, some freed
        assert 40 << 20 <= full["locked_bytes"] < 128 << 20, full
        # locked in whole chunks (a few mappings, docs/heap.md): at least
        # what is committed, at most a chunk more per run of it
        assert full["committed"] <= full["locked_bytes"], full
        assert (full["locked_bytes"] - full["committed"]
                <= 16 * full["lock_chunk"]), full
        assert full["vmlck"] >= full["locked_bytes"], full


def test_partial_lock_can_be_refused():
    """-W error::RuntimeWarning: a process that cannot lock all of its
    secret heap runs no do() at all (every call raises, func never runs).
    """
    code = r"""
import json, secret
ran, errors = [], []
for _ in range(3):
    try:
        secret.do(ran.append, 1)
    except RuntimeWarning as e:
        errors.append(str(e))
print(json.dumps(dict(ran=len(ran), errors=len(errors))))
"""
    out, _ = run_lock_child(memlock=4 << 20, code=code,
                            options=("-W", "error::RuntimeWarning"))
    assert out == {"ran": 0, "errors": 3}, out
    # The control: same child without the limit: all three run.
    full, _ = run_lock_child(code=code,
                             options=("-W", "error::RuntimeWarning"))
    if has_cap_ipc_lock():
        assert full == {"ran": 3, "errors": 0}, full


def has_cap_ipc_lock():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 14))
    return False


def test_exhaustion_raises_memory_error_and_recovers():
    code = r"""
import os, secret
def big():
    return bytearray(os.urandom(1)) * (200 << 20)
try:
    secret.do(big)
except MemoryError as e:
    # It says why: a full secret heap, not the machine's memory.
    print("memoryerror", "secret heap exhausted" in str(e),
          "64 MiB" in str(e) and "secret_heap_size" in str(e))
# Control: out of memory outside do says nothing of the secret heap.
try:
    bytearray(1 << 62)
except MemoryError as e:
    print("plain", str(e) == "")
info = secret.heap_info()
assert info["size"] == 64 << 20, info
assert info["exhausted"] >= 1, info
# do() works again, and what it made is still secret
x = secret.do(lambda: bytes(os.urandom(1000)))
import _testsecret
a = _testsecret.buffer_address(x)
assert info["base"] <= a < info["base"] + info["reserved"]
print("ok")
"""
    r = subprocess.run([sys.executable, "-X", "secret_heap_size=64M", "-c",
                        code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["memoryerror", "True", "True",
                                "plain", "True", "ok"]


def test_handled_failure_is_not_blamed_for_a_later_memory_error():
    # A secret allocation that fails and whose caller copes without
    # raising (C code with a fallback) must not make a later, unrelated
    # MemoryError say the secret heap is full.
    code = r"""
import operator, os, secret, sys
import _testsecret
pair = [None, None]
huge = sys.maxsize // 2 + 1     # pair * huge overflows: a plain MemoryError

def message(func, *args):
    try:
        secret.do(func, *args)
    except MemoryError as e:
        return str(e)
    return "no error"

# Control: a failed secret allocation that is reported says so.
print("reported", "secret heap exhausted" in message(
    _testsecret.alloc_block, "mem", bytes(128 << 20)))

# Handled in one do(), the overflow raised in the next one: plain.
assert secret.do(_testsecret.try_alloc, "mem", 128 << 20) is False
print("next_do", repr(message(operator.mul, pair, huge)))

# Handled, then a secret allocation that succeeds, then the overflow, all
# in one do(): plain.
def same_do():
    assert _testsecret.try_alloc("mem", 128 << 20) is False
    more = bytearray(os.urandom(64))
    return pair * huge
print("same_do", repr(message(same_do)))
assert secret.heap_info()["exhausted"] == 3
"""
    r = subprocess.run([sys.executable, "-X", "secret_heap_size=64M", "-c",
                        code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reported", "True", "next_do", "''",
                                "same_do", "''"]


WINDOW_CHILD = r"""
import json, os, secret
import _testsecret
x = secret.do(lambda: bytes(os.urandom(1000)))
info = secret.heap_info()
base, size = info["base"], info["reserved"]
a = _testsecret.buffer_address(x)
maps = []
for line in open("/proc/self/maps"):
    lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
    if lo < base + (32 << 30) and hi > base:
        maps.append((lo - base, hi - base, line.split()[1]))
flags = {}
for line in open("/proc/self/smaps"):
    if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
        start = int(line.split("-")[0], 16) - base
    elif line.startswith("VmFlags:"):
        flags[start] = line.split()[1:]
print(json.dumps(dict(base=base, size=size, inside=base <= a < base + size,
                      maps=maps, rest_flags=flags.get(size, []))))
"""


def run_window_child(address_space=None):
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (address_space,) * 2)
    r = subprocess.run([sys.executable, "-X", "secret_heap_size=64M", "-c",
                        WINDOW_CHILD], capture_output=True, text=True,
                       timeout=60,
                       preexec_fn=limit if address_space else None)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_heap_is_alone_in_its_16_gib_window():
    """The secret heap starts a 16 GiB-aligned window whose rest is reserved
    inaccessible (so pymalloc's radix tree has no node there and the free
    path's lookup stays short); when RLIMIT_AS refuses that much address
    space, the heap alone is reserved, 32 MiB aligned, and works."""
    win = 16 << 30
    r = run_window_child()
    assert r["inside"]
    assert r["base"] % win == 0, hex(r["base"])
    size = r["size"]
    # The heap: accessible from base to base + size (mlock may split it).
    heap = [m for m in r["maps"] if m[0] < size]
    assert heap[0][0] <= 0 and heap[-1][1] >= size, r["maps"]
    assert all(m[2] == "rw-p" for m in heap), r["maps"]
    # The rest of the window: inaccessible, right after the heap.
    assert any(m[0] == size and m[1] >= win and m[2] == "---p"
               for m in r["maps"]), r["maps"]
    # ... and left out of core dumps (else a core carries 15 GiB of zeros).
    assert "dd" in r["rest_flags"], r["rest_flags"]
    # Control: under an address-space limit the window cannot be had.
    # (AddressSanitizer cannot start under one: its shadow needs terabytes.)
    if ASAN:
        return
    r = run_window_child(address_space=8 << 30)
    assert r["inside"]
    assert r["base"] % (32 << 20) == 0
    assert not any(m[0] == r["size"] and m[2] == "---p"
                   for m in r["maps"]), r["maps"]


def test_heap_size_from_environment():
    code = ("import secret; secret.do(int); "
            "print(secret.heap_info()['size'])")
    env = dict(os.environ, PYTHONSECRETHEAPSIZE="96M")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == 96 << 20
    # -E ignores the environment: the default size.
    r = subprocess.run([sys.executable, "-E", "-c", code],
                       capture_output=True, text=True, env=env, timeout=60)
    assert int(r.stdout) == 1 << 30


SIZE_CHILD = r"""
import secret
called = []
try:
    secret.do(called.append, 1)
except ValueError as e:
    print("ValueError", called, e)
else:
    print("size", secret.heap_info()["size"], called)
"""


@pytest.mark.parametrize("opt, text, reserved", [
    ("env", "64MiB", 64 << 20),
    ("env", "67108864", 64 << 20),
    ("x", "96m", 96 << 20),
    ("x", "2G", 2 << 30),
    ("x", "8M", 8 << 20),            # fits the default RLIMIT_MEMLOCK
    ("env", "1M", 1 << 20),          # the minimum
    ("x", "1500000", 1500000),       # exact: never rounded
    ("x", "1K", "too small"),
    ("env", "1048575", "too small"),
    ("x", "1025G", "too large"),
    ("env", "64 MiB", None),
    ("env", "-1", None),
    ("env", "0", None),
    ("env", "lots", None),
    ("x", "99999999999999999999G", None),
    ("x", "1T", None),
    ("x", None, None),               # -X secret_heap_size without a value
])
def test_heap_size_setting_is_checked(opt, text, reserved):
    """A size setting that is not a size makes do() raise ValueError naming
    it (func not called), never a silent default."""
    env = dict(os.environ)
    env.pop("PYTHONSECRETHEAPSIZE", None)
    args = [sys.executable]
    if opt == "env":
        env["PYTHONSECRETHEAPSIZE"] = text
        name = "PYTHONSECRETHEAPSIZE"
    else:
        args += ["-X", "secret_heap_size" if text is None
                 else "secret_heap_size=" + text]
        name = "-X secret_heap_size"
    r = subprocess.run(args + ["-c", SIZE_CHILD], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    if isinstance(reserved, int):
        assert r.stdout.split() == ["size", str(reserved), "[1]"]
    elif reserved is not None:
        # Out of range: refused and said, never rounded.
        assert r.stdout.startswith("ValueError [] secret.do(): %s=%s is %s"
                                   % (name, text, reserved)), r.stdout
        assert "at least 1M" in r.stdout
    else:
        assert r.stdout.startswith("ValueError [] secret.do(): %s=%s is "
                                   "not a size" % (name, text or "")), \
            r.stdout


REALLOC_CHILD = r"""
import os, struct, sys, secret, _testsecret as T
protect = sys.argv[1] == "1"
MEM = open("/proc/self/mem", "rb", buffering=0)

def read(addr, buf):
    try:
        MEM.seek(addr)
        return buf if MEM.readinto(buf) == len(buf) else b""
    except OSError:
        return b""

chunk = os.urandom(4096)
item = object()
mark = struct.pack("<Q", id(item)) * 2    # list items: pointers

def grow(addrs, laddrs):
    ba = bytearray()
    lst = []
    for _ in range(64):
        ba += chunk
        addrs.append(T.buffer_address(ba))
        lst.extend([item] * 512)
        laddrs.append(T.buffer_address(lst))

addrs, laddrs = [], []
buf = bytearray(4096)
(secret.do if protect else (lambda f, *a: f(*a)))(grow, addrs, laddrs)
ba_hits = sum(bytes(read(a, buf)).count(chunk[16:48]) for a in set(addrs))
l_hits = sum(bytes(read(a, buf)).count(mark) for a in set(laddrs))
print(ba_hits, l_hits)
"""


@pytest.mark.parametrize("protect", [False, True])
def test_realloc_growing_bytearray_and_list_leaves_no_old_copy(protect):
    ba_hits, l_hits = map(int, run_child(REALLOC_CHILD, protect,
                                         text=True).split())
    if protect:
        assert (ba_hits, l_hits) == (0, 0)
    else:
        assert ba_hits > 0 and l_hits > 0, "control: old copies remain"


PRE_DO_REALLOC_CHILD = r"""
import os, sys, secret, _testsecret as T
protect = sys.argv[1] == "1"
MEM = open("/proc/self/mem", "rb", buffering=0)
secret.do(int)
info = secret.heap_info()
lo, hi = info["base"], info["base"] + info["reserved"]
out = []
for domain in ("raw", "mem", "obj"):
    data = os.urandom(2000)
    buf = bytearray(2000)
    a = T.alloc_block(domain, data)          # made before do: ordinary
    assert not lo <= a < hi
    if protect:
        b = secret.do(T.realloc_block, domain, a, 100000)
    else:
        b = T.realloc_block(domain, a, 100000)
    MEM.seek(a)
    MEM.readinto(buf)
    old = bytes(buf).count(data[64:96])      # old copy (glibc writes 0-32)
    MEM.seek(b)
    MEM.readinto(buf)
    moved_ok = bytes(buf) == data            # content moved along
    secret_b = lo <= b < hi
    c = T.realloc_block(domain, b, 300000)   # outside do
    secret_c = lo <= c < hi
    T.free_block(domain, c)
    out.append("%s:%d:%d:%d:%d" % (domain, old, moved_ok, secret_b, secret_c))
print(" ".join(out))
"""


@pytest.mark.parametrize("protect", [False, True])
def test_realloc_of_pre_do_block(protect):
    # In do, realloc of an ordinary block moves it into the secret heap and
    # zeroes the old copy; a secret block reallocated after do stays secret.
    # Control: plain realloc leaves the data at the old address.
    for item in run_child(PRE_DO_REALLOC_CHILD, protect, text=True).split():
        domain, old, moved_ok, secret_b, secret_c = item.split(":")
        assert moved_ok == "1", item
        if protect:
            assert (old, secret_b, secret_c) == ("0", "1", "1"), item
        else:
            assert old != "0", ("control: the old copy remains", item)
            assert (secret_b, secret_c) == ("0", "0"), item


GROW_CHILD = r"""
import os, sys, secret, _testsecret as T
protect = sys.argv[1] == "1"
MEM = open("/proc/self/mem", "rb", buffering=0)
secret.do(int)

def read(addr, buf):
    try:
        MEM.seek(addr)
        return bytes(buf) if MEM.readinto(buf) == len(buf) else b""
    except OSError:
        return b""

chunk = sys.stdin.buffer.read(4096)          # the secret, from a pipe
probe = chunk[100:132]
CHUNKS = 1024                                # 4 MiB in all

def grow():
    ba = bytearray()
    addrs = []
    for _ in range(CHUNKS):
        ba += chunk
        addrs.append(T.buffer_address(ba))
    headroom = secret.heap_info()["headroom_blocks"]
    # Shrink it a lot: the big block is given up, its content moves.
    last = addrs[-1]
    del ba[4096:]
    return ba, addrs, last, T.buffer_address(ba), headroom

info0 = secret.heap_info()
if protect:
    ba, addrs, last, small, headroom = secret.do(grow)
else:
    ba, addrs, last, small, headroom = grow()
info1 = secret.heap_info()
moves = len(set(addrs))
buf = bytearray(4 << 20)
old_big = read(last, buf).count(probe)       # the 4 MiB block, given up
kept = bytes(ba) == chunk
del ba
moved = sum(read(a, bytearray(4096)).count(probe) for a in set(addrs))
grown = info1["resident"] - info0["resident"]
print(moves, headroom, old_big, int(kept), moved, grown >> 20)
"""


@pytest.mark.parametrize("protect", [False, True])
def test_large_growth_in_place_with_untouched_headroom(protect):
    # A bytearray grown to 4 MiB in do: its block gets headroom, so it is
    # moved (copied and zeroed) a few times, not at every 1.5x growth; the
    # headroom is never touched (resident memory grows by about the data,
    # not by the 64 MiB reserved), and the block given up when it shrinks
    # is zero. Control: outside do the old block keeps the data.
    out = run_child(GROW_CHILD, protect, input=os.urandom(4096))
    moves, headroom, old_big, kept, moved, grown_mib = map(int, out.split())
    assert kept == 1
    if protect:
        # 1.5x steps from 4 KiB to 4 MiB would be ~18 blocks.
        assert moves <= 12, moves
        assert headroom >= 1
        assert (old_big, moved) == (0, 0)
        assert grown_mib < 32, grown_mib
    else:
        assert headroom == 0
        assert old_big > 0, "control: the given-up block keeps the data"


MANY_GROW_CHILD = r"""
import sys, secret
chunk = sys.stdin.buffer.read(1024)

def f():
    bufs = [bytearray() for _ in range(24)]
    most = 0
    for _ in range(1024):                    # 24 buffers of 1 MiB
        for b in bufs:
            b += chunk
        most = max(most, secret.heap_info()["headroom_blocks"])
    ok = all(b == chunk * 1024 for b in bufs)
    return ok, most

ok, most = secret.do(f)
info = secret.heap_info()
print(int(ok), most, info["headroom_blocks"], info["live_bytes"] < (1 << 20))
"""


def test_headroom_is_bounded_in_a_small_heap():
    # 24 buffers growing at once in a 64 MiB heap: headroom holds at most a
    # quarter of it, the rest grow by half as before; all succeed, and no
    # headroom block outlives its buffer.
    r = subprocess.run([sys.executable, "-X", "secret_heap_size=64M", "-c",
                        MANY_GROW_CHILD], input=os.urandom(1024),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    ok, most, left, small = r.stdout.split()
    assert ok == b"1"
    # 16 MiB of headroom budget, 4 MiB (a sixteenth) per block at most.
    assert 1 <= int(most) < 24, most
    assert left == b"0" and small == b"True"
