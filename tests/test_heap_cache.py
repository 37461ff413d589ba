"""The secret heap's per-thread cache of zeroed blocks (spec §3.4, and the
cost of a coroutine's step, §2.1). A thread keeps up to 4 KiB of small
secret blocks it freed, zeroed, and hands them out again without the heap's
lock. These tests try to get data back out of a cached block, to lose
blocks or counts with threads that end every way a thread can end, with
fork() and with a full heap; each has a control that shows what is tested
is there (the cache hands blocks out again; ordinary freed memory keeps its
data)."""

import os
import queue
import random
import threading

import pytest

import secret
from conftest import in_secret_heap, read_mem, run_python

T = pytest.importorskip("_testsecret")

DOMAINS = ("mem", "obj", "raw")
CACHE_BYTES = 4096


def _pattern(n, rng):
    # No zero byte: a zero left in place would look erased.
    return bytes(rng.randrange(1, 256) for _ in range(n))


def _no_data(held):
    """A block handed out holds zeros, but for its first word when it came
    from the heap rather than the cache: mimalloc's free-list link, an
    address in the heap (never secret data)."""
    word = int.from_bytes(held[:8], "little")
    return held[8:] == bytes(len(held) - 8) and (
        word == 0 or in_secret_heap(word))


def _cycle(domain, data, protect):
    """Allocate data's size, fill it, free it, allocate the same size
    again: (first address, second address, what the second block holds,
    what the first block held right after its free, past its first word)."""
    n = len(data)
    after = bytearray(n)
    held = bytearray(max(n, 8))    # a block has 16 bytes at least

    def body():
        a = T.alloc_block(domain, data)
        T.free_block(domain, a)
        got_after = read_mem(a, after)
        b = T.alloc_untouched(domain, n)
        got_held = read_mem(b, held)
        T.free_block(domain, b)
        return a, b, got_held, got_after

    return secret.do(body) if protect else body()


def test_generated_sizes_handed_out_zero():
    """2,000 generated (domain, size) cycles in do(): a block freed in
    secret mode is zero at once (but for the cache's link in its first
    word) and holds no data when handed out again, whatever the next size
    asked (a block from the heap may hold mimalloc's link in its first word).
    Control: the cache is used (the same address comes back, its link
    cleared), and the same cycles on ordinary memory find the data
    again."""
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    secret.do(lambda: None)
    reused = 0
    control_found = 0
    for i in range(2000):
        domain = rng.choice(DOMAINS)
        n = rng.randrange(1, 257)
        data = _pattern(n, rng)
        a, b, held, after = _cycle(domain, data, True)
        assert in_secret_heap(a) and in_secret_heap(b)
        assert after[8:] == bytes(n - 8 if n > 8 else 0), (domain, n)
        assert data[8:] not in after or n <= 8
        assert _no_data(held), (domain, n, a == b, bytes(held[:16]))
        # From the cache (the same address, its link cleared); a full
        # cache sends it to the heap, which may hand it out again too.
        reused += a == b and held == bytes(len(held))
        if i % 10 == 0:
            _, _, _, c_after = _cycle(domain, data, False)
            control_found += n > 32 and data[16:32] in c_after
    assert reused > 1500, reused
    assert control_found > 0, "control: ordinary freed memory keeps data"


def test_mixed_sizes_never_return_data():
    """Blocks of every cached size freed in a random order, then allocated
    in another random order with sizes that round to the same bins: none
    holds a byte of what any block held. Control: the same addresses come
    back (the cache served them)."""
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    secret.do(lambda: None)
    for _ in range(50):
        sizes = [rng.randrange(1, 257) for _ in range(40)]
        datas = [_pattern(n, rng) for n in sizes]

        def body():
            addrs = [T.alloc_block("mem", d) for d in datas]
            order = list(range(len(addrs)))
            rng.shuffle(order)
            for i in order:
                T.free_block("mem", addrs[i])
            again = []
            for n in rng.sample(sizes, len(sizes)):
                b = T.alloc_untouched("mem", n)
                again.append((b, read_mem(b, max(n, 8))))
            for b, _ in again:
                T.free_block("mem", b)
            return addrs, again

        addrs, again = secret.do(body)
        for b, held in again:
            assert _no_data(held)
        assert len(set(addrs) & {b for b, _ in again}) > 0


def _thread_fills_cache(ev_filled, ev_end, out, how):
    def body():
        blocks = [T.alloc_block("mem", os.urandom(200) + b"\x01")
                  for _ in range(20)]
        for a in blocks:
            T.free_block("mem", a)
    secret.do(body)
    out["own"] = secret.heap_info()["cached_bytes"]
    ev_filled.set()
    ev_end.wait()


@pytest.mark.parametrize("how", ["thread", "foreign", "pthread_exit"])
def test_thread_end_gives_blocks_back(how):
    """A thread that freed secret blocks keeps some; when it ends (a
    threading.Thread, a thread made with pthread_create, one that leaves
    by pthread_exit) they go back: cached_bytes falls to what it was and
    the counts stay consistent. Control: while the thread lives, its blocks
    are counted in cached_bytes."""
    secret.do(lambda: None)
    base = secret.heap_info()
    ev_filled, ev_end, out = threading.Event(), threading.Event(), {}

    def run():
        _thread_fills_cache(ev_filled, ev_end, out, how)

    if how == "thread":
        t = threading.Thread(target=run)
    else:
        t = threading.Thread(
            target=T.run_in_foreign_thread, args=(run, how == "pthread_exit"))
    t.start()
    assert ev_filled.wait(60)
    during = secret.heap_info()
    assert during["cached_bytes"] >= base["cached_bytes"] + 3000, \
        "control: the thread's cache holds its freed blocks"
    ev_end.set()
    t.join()
    after = secret.heap_info()
    assert after["cached_bytes"] <= during["cached_bytes"] - 3000, \
        (base["cached_bytes"], during["cached_bytes"], after["cached_bytes"])
    assert after["live_blocks"] <= base["live_blocks"] + 5
    assert after["allocations"] - base["allocations"] >= 20
    assert after["frees"] - base["frees"] >= 20


def test_threads_churn_counts_and_bound():
    """Eight threads allocate and free random small and large secret blocks
    for a few thousand steps, handing a third of them to another thread to
    free; threads start and end all along. At the end every block is freed:
    live blocks and bytes are where they started, no thread keeps more than
    4 KiB, and no block's data is left in the heap. Control: during the run
    blocks are live and caches hold bytes."""
    code = r"""
import os, queue, random, threading, secret, _testsecret as T
secret.do(lambda: None)
base = secret.heap_info()
rng = random.Random(int.from_bytes(os.urandom(4), "little"))
marker = os.urandom(16)
handoff = queue.Queue()
peak = {"cached": 0, "live": 0}
def worker(seed, steps):
    r = random.Random(seed)
    def body():
        mine = []
        for _ in range(steps):
            op = r.random()
            if op < 0.5 or not mine:
                n = r.choice([r.randrange(1, 257), r.randrange(257, 3000)])
                mine.append(T.alloc_block("mem", marker * (n // 16 + 1)))
            elif op < 0.8:
                T.free_block("mem", mine.pop(r.randrange(len(mine))))
            else:
                handoff.put(mine.pop())
            try:
                T.free_block("mem", handoff.get_nowait())
            except queue.Empty:
                pass
        held = secret.heap_info()["live_blocks"] - base["live_blocks"]
        peak["live"] = max(peak["live"], held)
        for a in mine:
            T.free_block("mem", a)
    secret.do(body)
    info = secret.heap_info()
    peak["cached"] = max(peak["cached"], info["cached_bytes"])
for wave in range(6):
    ts = [threading.Thread(target=worker, args=(rng.random(), 600))
          for _ in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
while not handoff.empty():
    T.free_block("mem", handoff.get())
del handoff     # its unfinished_tasks count, an int made in do(), is secret
info = secret.heap_info()
lo, hi = info["base"], info["base"] + info["reserved"]
left = T.count_in_range(lo, hi - lo, marker[:8])
print(info["live_blocks"] - base["live_blocks"],
      info["live_bytes"] - base["live_bytes"],
      info["cached_bytes"] - base["cached_bytes"],
      peak["cached"], peak["live"], left)
"""
    r = run_python("experiment", code)
    dblocks, dbytes, dcached, peak_cached, peak_live, left = map(
        int, r.stdout.split())
    assert dblocks == 0 and dbytes == 0, r.stdout
    assert dcached <= CACHE_BYTES, r.stdout      # this thread's only
    assert left == 0, r.stdout
    assert peak_live > 50 and peak_cached > 0, "control: " + r.stdout


def test_fork_child_keeps_counts():
    """fork() while another thread holds cached blocks: in the child that
    thread is gone; its blocks are out of every count, the child's own
    cache still works, and its counts stay consistent. Control: in the
    parent the other thread's blocks are counted."""
    code = r"""
import os, threading, secret, _testsecret as T
secret.do(lambda: None)
filled, end = threading.Event(), threading.Event()
def other():
    def body():
        for a in [T.alloc_block("mem", b"x" * 200) for _ in range(20)]:
            T.free_block("mem", a)
    secret.do(body)
    filled.set()
    end.wait()
t = threading.Thread(target=other); t.start(); filled.wait()
parent = secret.heap_info()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    c0 = secret.heap_info()
    def body():
        blocks = [T.alloc_block("mem", b"y" * 100) for _ in range(500)]
        for a in blocks:
            T.free_block("mem", a)
    secret.do(body)     # returns None: an int made in do() would be secret
    n = 500
    c1 = secret.heap_info()
    os.write(w, ("%d %d %d %d %d" % (c0["cached_bytes"], c1["cached_bytes"],
             c1["live_blocks"] - c0["live_blocks"],
             c1["allocations"] - c0["allocations"], n)).encode())
    os._exit(0)
os.close(w)
child = os.read(r, 200).decode()
os.waitpid(pid, 0)
end.set(); t.join()
print(parent["cached_bytes"], child)
"""
    r = run_python("experiment", code)
    pc, c0, c1, dlive, dalloc, n = map(int, r.stdout.split())
    assert pc >= 200 * 16, "control: " + r.stdout
    assert c0 < pc and c0 <= CACHE_BYTES and c1 <= CACHE_BYTES, r.stdout
    assert dlive == 0 and dalloc >= n == 500, r.stdout


def test_full_heap_then_recovers():
    """A 1 MiB heap filled by one thread while others hold cached blocks:
    MemoryError, then every block freed and the heap serves a block of
    each size again. Control: the heap was full (MemoryError)."""
    code = r"""
import threading, secret, _testsecret as T
hold, end = threading.Event(), threading.Event()
def other():
    def body():
        for a in [T.alloc_block("mem", b"x" * 240) for _ in range(16)]:
            T.free_block("mem", a)
    secret.do(body)
    hold.set(); end.wait()
t = threading.Thread(target=other); t.start(); hold.wait()
def fill():
    blocks = []
    try:
        while True:
            blocks.append(T.alloc_untouched("mem", 64 + 16 * (len(blocks) % 12)))
    except MemoryError as e:
        full = "secret heap" in str(e)
    for a in blocks:
        T.free_block("mem", a)
    return full, len(blocks)
full, n = secret.do(fill)
ok = secret.do(lambda: all(T.try_alloc("mem", s) for s in range(1, 4097, 97)))
end.set(); t.join()
print(full, n > 1000, ok)
"""
    r = run_python("experiment", code,
                   env=dict(os.environ, PYTHONSECRETHEAPSIZE="1M"))
    assert r.stdout.split() == ["True", "True", "True"], r.stdout + r.stderr


_PINNER = r"""
N = 80000
addrs = array.array("Q", bytes(8 * N))     # ordinary memory, made before do


def pin_pages(keep_live):
    # 16-byte blocks over some 20 of the heap's 64 KiB pages. The first
    # block of 16 of those pages is freed first, into this thread's cache
    # (16 deep), or kept live (the control); the rest go back to the heap.
    n = 0
    while n < N:
        try:
            addrs[n] = T.alloc_untouched("raw", 16)
        except MemoryError:
            break
        n += 1
    first = {}
    for i in range(n):
        first.setdefault(addrs[i] >> 16, i)
    pinned = sorted(first.values())[:16]
    if not keep_live:
        for i in pinned:
            T.free_block("raw", addrs[i])
            addrs[i] = 0
    keep = set(pinned) if keep_live else ()
    for i in range(n):
        if addrs[i] and i not in keep:
            T.free_block("raw", addrs[i])
            addrs[i] = 0
    return len(first)


def big():
    try:
        bytearray(1 << 20)
        return "ok"
    except MemoryError as e:
        return "full" if "secret heap" in str(e) else repr(e)
"""


_PIN = r"""
import array, sys, threading, secret, _testsecret as T
""" + _PINNER + r"""
keep_live = sys.argv[1] == "live"
ready, done = threading.Event(), threading.Event()
info = {}
def pinner():
    info["pages"] = secret.do(pin_pages, keep_live)
    info["cached"] = secret.heap_info()["cached_bytes"]
    ready.set()
    done.wait()
    if keep_live:
        secret.do(lambda: [T.free_block("raw", a) for a in addrs if a])
t = threading.Thread(target=pinner); t.start(); ready.wait()
print(info["pages"], info["cached"], secret.do(big))
done.set(); t.join()
print(secret.do(big), secret.heap_info()["cached_bytes"])
"""


@pytest.mark.parametrize("held", ["cached", "live"])
def test_full_heap_takes_other_threads_caches(held):
    """A block in another thread's cache keeps its whole mimalloc page:
    16 cached blocks of 16 bytes keep a 2 MiB heap from serving 1 MiB. The
    failing allocation takes every thread's cache back and succeeds.
    Control: the same 16 blocks held live by that thread (not cached) make
    the allocation fail, so the pages they keep are what decides."""
    r = run_python("experiment", _PIN, held,
                   env=dict(os.environ, PYTHONSECRETHEAPSIZE="2M"))
    first, second = r.stdout.splitlines()
    pages, cached, while_idle = first.split()
    assert int(pages) >= 17, r.stdout
    if held == "cached":
        assert int(cached) >= 16 * 16, r.stdout
        assert while_idle == "ok", r.stdout
    else:
        assert while_idle == "full", r.stdout
    assert second.split()[0] == "ok", r.stdout


def test_exhaustion_message_counts_live_blocks_only():
    """The MemoryError's "in use by live blocks" leaves out the bytes that
    sit in caches (free for the program). Control: the thread's cache held
    more than 1 KiB when the allocation failed, so counting it would
    show."""
    code = r"""
import re, secret, _testsecret as T
def body():
    for a in [T.alloc_block("mem", b"x" * 96) for _ in range(16)]:
        T.free_block("mem", a)
    info = secret.heap_info()
    T.fail_secret_allocations(0, 1)
    try:
        T.alloc_untouched("mem", 4096)
    except MemoryError as e:
        msg = str(e)
    live = int(re.search(r"; (\d+) in use by live blocks", msg).group(1))
    after = secret.heap_info()   # counts info, the error and its message
    return info["cached_bytes"], after["cached_bytes"], after["live_bytes"], live
print(*secret.do(body))
"""
    r = run_python("experiment", code)
    cached, cached_after, live_after, in_message = map(int, r.stdout.split())
    assert cached >= 1536 and cached_after >= 1536, r.stdout
    assert 0 < in_message <= live_after + 256, r.stdout


_RACE = r"""
import gc, os, threading, time, secret, _testsecret as T
gc.disable()    # a collection's callbacks report the full heap on stderr
SEED = int(os.environ["RACE_SEED"])
stop = threading.Event()
secret.do(lambda: None)
h = secret.heap_info()
heap = h["base"], h["reserved"]
def churn(k):
    while not stop.is_set():
        try:
            secret.do(T.raw_churn, 20000, k + 1, SEED + k, *heap)
        except MemoryError:     # do's own objects, the heap full
            pass
base = h["live_blocks"]
ts = [threading.Thread(target=churn, args=(k,)) for k in range(3)]
for t in ts: t.start()
fulls = 0
try:
    # Until the threads' caches were taken often enough (or 20 s).
    end = time.monotonic() + 20
    while (secret.heap_info()["caches_taken"] < int(os.environ["TAKES"])
           and time.monotonic() < end):
        fulls += secret.do(T.fill_heap, 5, SEED)
finally:
    stop.set()
    for t in ts: t.join()
totals = T.raw_churn(0, 1, 0)
h = secret.heap_info()
print(*totals, fulls, h["live_blocks"] - base, h["caches_taken"])
"""


@pytest.mark.parametrize("seed", [random.randrange(1 << 30) for _ in range(3)])
def test_full_heap_races_threads_using_their_caches(seed):
    """Three threads allocate, tag and free small raw blocks through their
    caches with the GIL released while a fourth fills a 1 MiB heap to the
    brim and empties it over and over, taking their caches each time:
    every block handed out holds nothing but zeros and the heap's own
    addresses, no block changes while its thread holds it (a second owner
    would write its tag), and nothing is lost. Control: their caches were
    taken hundreds of times while they were served blocks by the hundred
    thousand, and the heap was full."""
    r = run_python("experiment", _RACE, env=dict(
        os.environ, PYTHONSECRETHEAPSIZE="1M", RACE_SEED=str(seed),
        TAKES="300"))
    not_zero, changed, served, failed, fulls, dlive, taken = map(
        int, r.stdout.split())
    assert not_zero == 0 and changed == 0, r.stdout
    assert served > 100000 and taken >= 300 and fulls > 0, r.stdout
    assert dlive == 0, r.stdout


_NO_MEMBARRIER = r"""
import array, ctypes, os, struct, sys, threading, secret, _testsecret as T
""" + _PINNER + r"""
mode = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
X86 = os.uname().machine == "x86_64"
NR_MEMBARRIER, NR_SECCOMP = (324, 317) if X86 else (283, 277)
def deny_membarrier():
    # A seccomp filter on every thread: membarrier() fails with EPERM.
    ins = [(0x20, 0, 0, 0), (0x15, 0, 1, NR_MEMBARRIER),
           (0x06, 0, 0, 0x50000 | 1), (0x06, 0, 0, 0x7fff0000)]
    buf = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *i) for i in ins))
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filt", ctypes.c_void_p)]
    prog = Prog(len(ins), ctypes.addressof(buf))
    if (libc.prctl(38, 1, 0, 0, 0) != 0
            or libc.syscall(NR_SECCOMP, 1, 1, ctypes.byref(prog)) != 0):
        print("no-seccomp")
        sys.exit(0)
secret.do(lambda: T.free_block("raw", T.alloc_untouched("raw", 16)))
ready, go, done = threading.Event(), threading.Event(), threading.Event()
def pinner():
    secret.do(pin_pages, False)
    ready.set()
    go.wait()
    secret.do(lambda: T.free_block("raw", T.alloc_untouched("raw", 16)))
    done.set()
t = threading.Thread(target=pinner); t.start(); ready.wait()
if mode == "after":
    deny_membarrier()
first = secret.do(big)
go.set(); done.wait()
second = secret.do(big)
secret.do(lambda: [T.free_block("raw", T.alloc_untouched("raw", 16))
                   for _ in range(100)])
h = secret.heap_info()
print(first, second, h["caches_taken"], h["cached_bytes"])
t.join()
"""


@pytest.mark.parametrize("mode", ["after", "none"])
def test_membarrier_refused_later_turns_caches_off(mode):
    """membarrier() refused once caches exist (a seccomp filter put in
    place after the first do()): a thread's cache cannot be taken, so the
    heap turns caches off; each thread gives its cache back at its next
    operation on it and none starts again. Here a 1 MiB allocation first
    fails while an idle thread's 16 cached blocks pin 16 pages (the
    documented cost), then succeeds once that thread freed one more block,
    and nothing is cached after. Control ("none", no filter): the first
    allocation takes that thread's cache and succeeds; caches stay on."""
    r = run_python("experiment", _NO_MEMBARRIER, mode,
                   env=dict(os.environ, PYTHONSECRETHEAPSIZE="2M"))
    if r.stdout.strip() == "no-seccomp":
        pytest.skip("seccomp filters are not allowed here")
    first, second, taken, cached = r.stdout.split()
    if mode == "after":
        assert (first, second, taken, cached) == ("full", "ok", "0", "0"), \
            r.stdout
    else:
        assert first == second == "ok" and int(taken) >= 1, r.stdout
        assert int(cached) > 0, r.stdout
