"""Instruction counts (valgrind --tool=callgrind, PYTHONHASHSEED=0, so they
repeat) of small works, each a `scripts/bench.py callgrind WORK`:

  alloc       an allocation-heavy loop (alloc_loop.py) on pristine, the
              experiment and the experiment-off build, minus start-up; then
              the experiment running it inside secret.do()
  in-do       the works of issue 4's inside-do bounds and a float loop
              (works.py) inside secret.do() over the same work outside
  caches      cache-heavy loops outside do (patches 0018, 0019)
  adaptive    loops through the adaptive interpreter's generic paths
              (patch 0023's test), outside do; then inside do, by default
              and with -X secret_freeze_code
  io          buffered and text I/O on file objects made before (patches
              0014, 0027)
  thread-end  the secret heap's part of a thread's end (issue 21)
  exceptions  raising and catching outside do (patches 0015, 0021)
  do-exit     secret.do() per call: returning, raising (the exception
              walk), raising after making garbage
  exit-gc     the collection at the outermost do exit, in a process
              holding 3 million lists (works.py)
  native      malloc-heavy works through the C library's allocator
              (issue 23), outside do, on each interpreter; then inside do

A work that runs N times has a run of 0 times subtracted: start-up,
imports and set-up are left out.
"""

import os
import tempfile

from .common import HERE, ROOT, callgrind, instructions, interpreter
from .works import EXIT_GC_HOLD, EXIT_GC_MAKE


# -- alloc ------------------------------------------------------------------

def alloc(outdir):
    """The allocation-heavy loop on pristine, experiment and off (when
    built), minus each one's start-up (`-S -c pass`); the full callgrind
    files and counts are kept in outdir. Last line: the experiment running
    the loop inside secret.do(), minus a start-up that imports secret."""
    os.makedirs(outdir, exist_ok=True)
    script = os.path.relpath(os.path.join(HERE, "alloc_loop.py"), ROOT)

    def ir(name, argv):
        # From the top of the tree, paths relative to it, as the counts
        # in docs/ were made.
        n = callgrind([os.path.relpath(argv[0], ROOT), *argv[1:]],
                      out=os.path.abspath(os.path.join(outdir,
                                                       name + ".out")),
                      quiet=True, cwd=ROOT)[0]
        with open(os.path.join(outdir, name + ".ir"), "w") as f:
            f.write("%d\n" % n)
        return n

    counts = {}
    for v in ("pristine", "experiment", "off"):
        py = interpreter(v, required=v != "off")
        if py is None:
            continue
        w = ir(v + ".work", [py, "-S", script])
        e = ir(v + ".empty", [py, "-S", "-c", "pass"])
        counts[v] = w - e
        print("%s: %d total, %d startup, %d for the script" % (v, w, e,
                                                               w - e))
    py = interpreter("experiment")
    d = (ir("experiment.do", [py, "-S", script, "do"])
         - ir("experiment.doempty", [py, "-S", "-c", "import secret"]))
    print("experiment inside do: %d for the script, %.3fx outside"
          % (d, d / counts["experiment"]))


# -- in-do ------------------------------------------------------------------

IN_DO_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[4])
import secret
from works import j, d, grow, float_loop
work = {"json": j, "dict": d, "bytearray256": grow(256),
        "float": float_loop}[sys.argv[1]]
if not secret.supported():
    sys.exit("secret.do() would not erase here: nothing to measure")
for _ in range(int(sys.argv[3])):
    secret.do(work) if sys.argv[2] == "do" else work()
"""

IN_DO_WORKS = ("json", "dict", "bytearray256", "float")


def in_do(pythons, works=IN_DO_WORKS):
    """Each work 10 times, plainly and through do, on each experiment
    interpreter (a build tree's ./python works too)."""
    for py in pythons or [interpreter("experiment")]:
        for w in works:
            n = {m: instructions(py, IN_DO_CHILD, w, m, "10", HERE)
                 - instructions(py, IN_DO_CHILD, w, m, "0", HERE)
                 for m in ("plain", "do")}
            print("%s %s: plain %d, do %d, do/plain %.3f"
                  % (py, w, n["plain"], n["do"], n["do"] / n["plain"]))


# -- caches -----------------------------------------------------------------

CACHES_CHILD = r"""
import functools, re, sys, urllib.parse
work, n = sys.argv[1], int(sys.argv[2])

@functools.lru_cache(maxsize=128)
def bounded(x):
    return x

@functools.cache
def unbounded(x):
    return x

patterns = ["p%d[a-z]+" % i for i in range(300)]
for p in patterns:          # compiled once: later calls miss _cache2 only
    re.compile(p)
# The same setup whatever n is, so that the run of 0 subtracts it.
urls = ["https://u%d.example/x?y=1" % i for i in range(20000)][:n]
keys = range(n)
if work == "lru_hit":
    for i in range(100):
        bounded(i)
    for i in keys:
        bounded(i % 100)
elif work == "lru_miss_bounded":
    for i in keys:
        bounded(-i - 1)
elif work == "lru_miss_unbounded":
    for i in keys:
        unbounded(-i - 1)
elif work == "re_compile_cache2_miss":
    for i in keys:
        re.compile(patterns[i % 300])
elif work == "re_sub_template":
    for i in keys:
        re.sub(r"(a)", r"\1b", "xa")
elif work == "urlsplit_miss":
    for u in urls:
        urllib.parse.urlsplit(u)
elif work == "quote":
    for i in keys:
        urllib.parse.quote("a b/\u00e9")
"""

CACHES_WORKS = ("lru_hit", "lru_miss_bounded", "lru_miss_unbounded",
                "re_compile_cache2_miss", "re_sub_template", "urlsplit_miss",
                "quote")
CACHES_N = 20000


def caches(pythons, works=CACHES_WORKS):
    """Instructions per call of each work, N calls minus 0, on each
    (label, python) (default: pristine, experiment, off); each
    interpreter's ratio to the first."""
    pythons = pythons or [(v, interpreter(v))
                          for v in ("pristine", "experiment", "off")]
    print("| work | " + " | ".join(lab for lab, _ in pythons) + " |")
    print("|---" * (len(pythons) + 1) + "|")
    for w in works:
        per = [(instructions(py, CACHES_CHILD, w, str(CACHES_N))
                - instructions(py, CACHES_CHILD, w, "0")) / CACHES_N
               for _, py in pythons]
        cells = ["%.1f" % per[0]] + ["%.1f (%+.2f %%)" % (
            p, 100 * (p / per[0] - 1)) for p in per[1:]]
        print("| %s | %s |" % (w, " | ".join(cells)))


# -- adaptive ---------------------------------------------------------------

ADAPTIVE_CHILD = r"""
import sys
work, n = sys.argv[1], int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "plain"


class A:
    def __init__(self):
        self.x = 1


class B:
    __slots__ = ("x",)

    def __init__(self):
        self.x = 2


class C(A):
    pass


class D:
    x = 4


def bytes_subscript(n):
    # BINARY_SUBSCR on bytes has no specialized form: its counter moves at
    # every iteration.
    data = bytes(range(256))
    t = 0
    for i in range(n):
        t += data[i & 255]
    return t


def megamorphic_attr(n):
    # LOAD_ATTR over four layouts: the specialized form misses, the
    # generic one runs and moves the counter.
    objs = [A(), B(), C(), D()]
    t = 0
    for i in range(n):
        t += objs[i & 3].x
    return t


def mixed_compare(n):
    # COMPARE_OP over int, float and str operands.
    vals = [(1, 2), (1.5, 2.5), ("a", "b"), (3, 2.0)]
    t = 0
    for i in range(n):
        a, b = vals[i & 3]
        t += a < b
    return t


def specialized(n):
    # Specialized instructions only (FOR_ITER_RANGE, BINARY_OP_ADD_INT):
    # no counter moves, the test never runs.
    x = 0
    for i in range(n):
        x = x + 1
    return x


def richards_like(n):
    # Method calls, attribute reads and writes, branches: the shape of
    # pyperformance's object benchmarks.
    class Task:
        def __init__(self, p):
            self.p, self.n = p, 0

        def step(self, k):
            if k & 1:
                self.n += self.p
            else:
                self.n -= 1
            return self.n
    tasks = [Task(p) for p in range(8)]
    t = 0
    for i in range(n):
        t += tasks[i & 7].step(i)
    return t


WORKS = {f.__name__: f for f in (bytes_subscript, megamorphic_attr,
                                  mixed_compare, specialized,
                                  richards_like)}
f = WORKS[work]
if mode == "do":
    import secret
    if not secret.supported():
        sys.exit("secret.do() would not erase here: nothing to measure")
    secret.do(f, n)
else:
    f(n)
"""

ADAPTIVE_WORKS = ("bytes_subscript", "megamorphic_attr", "mixed_compare",
                  "specialized", "richards_like")
ADAPTIVE_N = 200000


def adaptive(pythons, works=ADAPTIVE_WORKS):
    """Patch 0023 (-X secret_freeze_code: in secret mode, code made before
    do() does not adapt). Outside do, instructions per iteration of loops
    whose every iteration runs an adaptive instruction's generic form,
    where a counter moves (the test's path), and of a loop of specialized
    instructions only (no test: what moves there is the compiler's code
    for the whole eval loop), on each (label, python) (default: pristine,
    experiment, off). Then, on the experiment, the same loops inside do(),
    by default and with the option: for code defined before do and run
    only inside it, which never specializes with the option."""
    pythons = pythons or [(v, interpreter(v))
                          for v in ("pristine", "experiment", "off")]

    def per(py, w, *extra, opts=()):
        def ir(n):
            return callgrind([py, *opts, "-S", "-c", ADAPTIVE_CHILD, w,
                              str(n), *extra])[0]
        return (ir(ADAPTIVE_N) - ir(0)) / ADAPTIVE_N

    print("Outside do(), instructions per iteration:\n")
    print("| work | " + " | ".join(lab for lab, _ in pythons) + " |")
    print("|---" * (len(pythons) + 1) + "|")
    for w in works:
        n = [per(py, w) for _, py in pythons]
        cells = ["%.1f" % n[0]] + ["%.1f (%+.1f)" % (x, x - n[0])
                                   for x in n[1:]]
        print("| %s | %s |" % (w, " | ".join(cells)))
    exp = dict(pythons).get("experiment")
    if exp is None:
        return
    print("\nInside do() on the experiment, instructions per iteration:\n")
    print("| work | default | -X secret_freeze_code | ratio |")
    print("|---|---|---|---|")
    for w in works:
        a = per(exp, w, "do")
        b = per(exp, w, "do", opts=("-X", "secret_freeze_code"))
        print("| %s | %.1f | %.1f | %.2fx |" % (w, a, b, b / a))


# -- io ---------------------------------------------------------------------

IO_CHILD = r"""
import io, os, sys
work, mode, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# File objects made before the work, as sys.stdin and sys.stdout are.
binary = open(path, "rb")
text = open(path, "r", encoding="ascii")
out = open(os.devnull, "w", encoding="ascii")
line = "x" * 60 + "\n"
data = (b"y" * 60 + b"\n") * 2000
br = io.BufferedReader(io.BytesIO(data))
bw = io.BufferedWriter(io.BytesIO())
tr = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)), encoding="ascii")
tw = io.TextIOWrapper(io.BufferedWriter(io.BytesIO()), encoding="ascii")
small = bytearray(16)
piece = b"0123456789abcdef"
tpiece = "0123456789abcde\n"

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

def small_reads():
    br.seek(0)
    for _ in range(2000):
        br.read(16)
        br.read1(16)
        br.readinto(small)
        br.peek(1)

def readline_bytes():
    br.seek(0)
    for _ in range(2000):
        br.readline()

def small_writes():
    bw.seek(0)
    for _ in range(2000):
        bw.write(piece)
    bw.flush()

def text_readline():
    tr.seek(0)
    for _ in range(2000):
        tr.readline()

def text_writes():
    tw.seek(0)
    for _ in range(2000):
        tw.write(tpiece)
    tw.flush()

fn = globals()[work]

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

# Work: the I/O calls one run makes (for the per-call figures).
IO_CALLS = {"lines_binary": 10001, "lines_text": 10001, "write_text": 10000,
            "small_reads": 8000, "readline_bytes": 2000, "small_writes": 2000,
            "text_readline": 2000, "text_writes": 2000}
IO_WORKS = tuple(IO_CALLS)
IO_RUNS = 5


def io(pythons=(), works=IO_WORKS, in_do=True):
    """Per work, file objects made before it (5 runs; start-up and set-up
    subtracted): instructions per I/O call outside do on each (label,
    python) (default: pristine and the experiment), the first one the
    reference; then, unless --no-do, each non-pristine one with every run
    inside do (the move into the secret heap and the zeroing). Works on a
    610 KB file (lines_binary, lines_text: readline; write_text: 61-byte
    writes to /dev/null) and on BytesIO-backed BufferedReader/Writer and
    TextIOWrapper (small_reads: read(16), read1(16), readinto(16 bytes),
    peek(1); readline_bytes; small_writes: 16 bytes; text_readline;
    text_writes: 16 characters). To compare two builds, give both, e.g.
    main=/work/main/cpython-build/install/experiment/bin/python3
    branch=cpython-build/install/experiment/bin/python3."""
    pythons = list(pythons) or [("pristine", interpreter("pristine")),
                                ("experiment", interpreter("experiment"))]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        # 10 000 lines of 61 bytes: 610 KB, read through an 8 KiB buffer.
        f.write(("y" * 60 + "\n") * 10000)
        f.flush()

        counted = {}

        def per_call(py, w, mode):
            if (py, w, mode) not in counted:
                n = (instructions(py, IO_CHILD, w, mode, str(IO_RUNS), f.name)
                     - instructions(py, IO_CHILD, w, mode, "0", f.name))
                counted[py, w, mode] = n / (IO_RUNS * IO_CALLS[w])
            return counted[py, w, mode]

        labels = [lab for lab, _ in pythons]
        print("Outside do(), instructions per I/O call:\n")
        print("| work | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 1) + "|")
        for w in works:
            n = [per_call(py, w, "plain") for _, py in pythons]
            cells = ["%.1f" % n[0]] + ["%.1f (%+.1f, %.4fx)"
                                       % (x, x - n[0], x / n[0])
                                       for x in n[1:]]
            print("| %s | %s |" % (w, " | ".join(cells)), flush=True)
        inside = [(lab, py) for lab, py in pythons if lab != "pristine"]
        if not in_do or not inside:
            return
        print("\nInside do(), instructions per I/O call (each run a "
              "do()), and over the same build outside:\n")
        print("| work | " + " | ".join(lab for lab, _ in inside) + " |")
        print("|---" * (len(inside) + 1) + "|")
        for w in works:
            cells = []
            for _, py in inside:
                d = per_call(py, w, "do")
                cells.append("%.1f (%.3fx)" % (d, d / per_call(py, w,
                                                               "plain")))
            print("| %s | %s |" % (w, " | ".join(cells)), flush=True)


# -- thread-end -------------------------------------------------------------

THREAD_END_CHILD = r"""
import os, sys, threading, secret
inherit = sys.argv[1] == "inherit"
def body():
    if not inherit:
        secret.do(lambda: [os.urandom(100) for _ in range(20)])
    else:
        [os.urandom(100) for _ in range(20)]
def start():
    t = threading.Thread(target=body)
    t.start()
    t.join()
secret.do(int)
for _ in range(int(sys.argv[2])):
    secret.do(start) if inherit else start()
"""
THREAD_END_N = 200


def thread_end(pythons):
    """Instructions counted inside _PySecretHeap_ThreadDone (the heap's
    part of the thread-end hook) per thread, for 200 threads that each
    ran secret.do() once and 200 started in do() (inherited)."""
    for py in pythons or [interpreter("experiment")]:
        for case in ("do", "inherit"):
            n = instructions(
                py, THREAD_END_CHILD, case, str(THREAD_END_N),
                options=["--toggle-collect=_PySecretHeap_ThreadDone"])
            print("%-8s %8.1f instructions per thread end  %s"
                  % (case, n / THREAD_END_N, py))


# -- locks ------------------------------------------------------------------

LOCKS_CHILD = r"""
import sys, threading
n, kind = int(sys.argv[1]), sys.argv[2]
if kind == "uncontended":
    lk = threading.Lock()
    rl = threading.RLock()
    for _ in range(n):
        with lk:
            pass
        with rl:
            pass
else:
    # Two threads hand a turn back and forth: each wait parks.
    a, b = threading.Semaphore(0), threading.Semaphore(0)
    def other():
        for _ in range(n):
            a.acquire()
            b.release()
    t = threading.Thread(target=other)
    t.start()
    for _ in range(n):
        a.release()
        b.acquire()
    t.join()
"""
LOCKS_N = 5000


def locks(pythons):
    """What the idle points (patch 0028) cost outside do(): instructions
    per iteration of an uncontended Lock and RLock acquire/release (the
    hook is not on that path), and of a handoff between two threads
    through semaphores (each wait parks: one test of a thread-local per
    park), run N and 2N times, the difference over N; then the
    instructions counted inside _PyParkingLot_Park per call."""
    for py in pythons or [interpreter(v) for v in ("pristine",
                                                   "experiment")]:
        for kind in ("uncontended", "handoff"):
            n1 = instructions(py, LOCKS_CHILD, str(LOCKS_N), kind)
            n2 = instructions(py, LOCKS_CHILD, str(2 * LOCKS_N), kind)
            print("%-12s %8.1f instructions per iteration  %s"
                  % (kind, (n2 - n1) / LOCKS_N, py), flush=True)


# -- greenlet ---------------------------------------------------------------

GREENLET_CHILD = r"""
import site, sys
site.main()             # -S: the venv's packages (greenlet)
import secret
n, kind = int(sys.argv[1]), sys.argv[2]
if kind.startswith("do"):
    if kind == "do-greenlet":
        import greenlet
    f = lambda: None
    secret.do(f)
    for _ in range(n):
        secret.do(f)
else:
    import greenlet
    if kind == "switch-traced":
        secret.do(lambda: None)     # puts the tracer in place
    main = greenlet.getcurrent()
    def other():
        while True:
            main.switch()
    g = greenlet.greenlet(other)
    for _ in range(n):
        g.switch()
"""
GREENLET_N = 4000


def greenlet(pythons):
    """What following greenlet switches costs: instructions per do(noop)
    in a program that never loads greenlet and in one that did (each do()
    asks greenlet which greenlet runs); per round trip of two greenlet
    switches without and with the trace function do() puts in place
    (greenlet's tracing machinery and ours). Each run N and 2N times, the
    difference over N. Needs greenlet in the interpreter's environment
    (the test venv has it)."""
    default = os.path.join(ROOT, "cpython-build", "venv", "experiment",
                           "bin", "python")
    for py in pythons or [default]:
        for kind in ("do-plain", "do-greenlet", "switch-untraced",
                     "switch-traced"):
            n1 = instructions(py, GREENLET_CHILD, str(GREENLET_N), kind)
            n2 = instructions(py, GREENLET_CHILD, str(2 * GREENLET_N), kind)
            print("%-16s %8.1f instructions per iteration  %s"
                  % (kind, (n2 - n1) / GREENLET_N, py), flush=True)


# -- exceptions -------------------------------------------------------------

EXCEPTIONS_CHILD = r"""
import sys
def f(n):
    raise ValueError(n)
def g(n):
    return f(n)
def main(n):
    c = 0
    for i in range(n):
        try:
            g(i)
        except ValueError:
            c += 1
        try:
            {}[i]
        except KeyError:
            c += 1
    return c
main(int(sys.argv[1]))
"""
EXCEPTIONS_N = 20000


def exceptions(pythons):
    """What the secret heap's exhaustion hooks add to exceptions outside
    do() (patches 0015 and 0021: a thread-local test per traceback entry,
    take_ownership keeping the exception being raised aside): instructions
    per iteration of a loop that raises and catches two exceptions (a
    ValueError through two Python frames, a KeyError from a dict), run N
    and 2N times, the difference over N (start-up left out)."""
    for py in pythons or [interpreter(v) for v in ("pristine",
                                                   "experiment")]:
        n1 = instructions(py, EXCEPTIONS_CHILD, str(EXCEPTIONS_N))
        n2 = instructions(py, EXCEPTIONS_CHILD, str(2 * EXCEPTIONS_N))
        print("%8.1f instructions per iteration (2 exceptions)  %s"
              % ((n2 - n1) / EXCEPTIONS_N, py))


# -- do-exit ----------------------------------------------------------------

DO_EXIT_CHILD = r"""
import sys, secret
def noop():
    pass
def raises():
    raise ValueError("x")
def garbage_then_raises():
    made = [[] for _ in range(50)]
    raise KeyError("k")
f = {"return": noop, "raise": raises,
     "garbage-raise": garbage_then_raises}[sys.argv[2]]
for _ in range(int(sys.argv[1])):
    try:
        secret.do(f)
    except Exception:
        pass
"""
DO_EXIT_N = 2000


def do_exit(pythons):
    """Instructions per secret.do() call (N and 2N calls, the difference
    over N) whose func returns, raises (the exception walk runs), or makes
    50 lists and raises. Under valgrind the C-stack tracker scans instead
    of tracking (docs/erasure.md): do(noop) costs far more than natively;
    compare interpreters with each other."""
    for py in pythons or [interpreter("experiment")]:
        for case in ("return", "raise", "garbage-raise"):
            n1 = instructions(py, DO_EXIT_CHILD, str(DO_EXIT_N), case)
            n2 = instructions(py, DO_EXIT_CHILD, str(2 * DO_EXIT_N), case)
            print("%-14s %9.1f instructions per do()  %s"
                  % (case, (n2 - n1) / DO_EXIT_N, py))


# -- exit-gc ----------------------------------------------------------------

EXIT_GC_CHILD = r"""
import gc, sys, secret
hold = [[] for _ in range(%d)]
gc.collect()
def func():
    x = [[i] for i in range(%d)]
    return len(x)
do = sys.argv[1] == "do"
for _ in range(int(sys.argv[2])):
    secret.do(func) if do else func()
""" % (EXIT_GC_HOLD, EXIT_GC_MAKE)


def exit_gc(python):
    """Instructions per call of func, plain and through do (5 calls minus
    0), in a process holding 3 million lists."""
    python = python or interpreter("experiment")
    per = {}
    for mode in ("plain", "do"):
        per[mode] = (instructions(python, EXIT_GC_CHILD, mode, "5")
                     - instructions(python, EXIT_GC_CHILD, mode, "0")) / 5
    print("holding %d lists, func makes %d: plain %.0f, do %.0f "
          "instructions per call (%.2fx)"
          % (EXIT_GC_HOLD, EXIT_GC_MAKE, per["plain"], per["do"],
             per["do"] / per["plain"]))


# -- native -----------------------------------------------------------------

NATIVE_CHILD = r"""
import json, sqlite3, sys, _sha2
work, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if work in ("pydantic", "yaml"):
    import site             # -S: a venv's packages (see native())
    site.main()
    import yaml
    from pydantic import BaseModel

    class Item(BaseModel):
        id: int
        name: str
        tags: list[str]
        score: float

    class Doc(BaseModel):
        items: list[Item]
    pdoc = json.dumps({"items": [{"id": i, "name": 'user"%d' % i,
                                  "tags": ["a", "b"], "score": i / 7}
                                 for i in range(500)]})
    ydoc = yaml.dump({"items": [{"id": i, "name": "user%d" % i,
                                 "tags": ["a", "b"]} for i in range(300)]})
# The same set-up whatever n is, so that the run of 0 subtracts it.
doc = json.dumps([{"id": i, "name": "user%d" % i, "tags": ["a", "b"],
                   "score": i / 7} for i in range(2000)])
hexes = ["%064x" % (i * 2654435761) for i in range(1000)]
db = sqlite3.connect(":memory:")
db.execute("create table t (k integer primary key, v text)")
if work == "fromhex":          # PYTHONMALLOC=malloc: every bytes is a malloc
    def run():
        for i in range(n):
            bytes.fromhex(hexes[i % 1000])
elif work == "json_loads":     # PYTHONMALLOC=malloc: the objects' mallocs
    def run():
        for i in range(n):
            json.loads(doc)
elif work == "sqlite_insert":  # sqlite3's own malloc
    def run():
        with db:
            db.executemany("insert into t (v) values (?)",
                           (("value %d" % i,) for i in range(n)))
        db.execute("delete from t")
elif work == "sha256":         # HACL*'s malloc'd state, per object
    def run():
        for i in range(n):
            _sha2.sha256(hexes[i % 1000].encode()).digest()
elif work == "alloc":          # alloc_loop.py's turn (callgrind alloc)
    def run():
        total = 0.0
        for i in range(n):
            t = (i, i + 1, i + 2)
            lst = [i, t, str(i)]
            d = {"a": i, "b": lst}
            f = float(i) * 1.5 + 0.25
            b = bytes(600)         # > 512 B: PyMem_RawMalloc, malloc
            s = "x%d" % i
            ba = bytearray(b"abc")
            ba += b"defghijk" * 8
            total += f + len(s) + len(d) + len(b) + len(ba)
elif work == "pydantic":       # pydantic-core's Rust
    def run():
        for i in range(n):
            Doc.model_validate_json(pdoc)
elif work == "yaml":           # libyaml through yaml.CSafeLoader
    def run():
        for i in range(n):
            yaml.load(ydoc, Loader=yaml.CSafeLoader)
if mode == "do":
    import secret
    secret.do(run)
else:
    run()
"""

NATIVE_WORKS = {"fromhex": ("malloc", 20000), "json_loads": ("malloc", 20),
                "sqlite_insert": (None, 20000), "sha256": (None, 20000),
                "alloc": (None, 50000), "pydantic": (None, 20),
                "yaml": (None, 5)}
# The works above that need pydantic and PyYAML: run them on venvs with
# tests/residue/thirdparty/requirements.txt (--works pydantic,yaml).
NATIVE_DEFAULT = ("fromhex", "json_loads", "sqlite_insert", "sha256",
                  "alloc")


def native(pythons, works=NATIVE_DEFAULT):
    """Instructions per iteration of each work (N minus 0), outside do, on
    each (label, python) (default: pristine, experiment; add main's with
    main=/work/main/cpython-build/install/experiment/bin/python3), with the
    PYTHONMALLOC each work names (malloc: every Python object through the
    C library's malloc); each one's ratio to the first. Then the last
    interpreter with the work inside secret.do() over outside. The works
    pydantic and yaml need those packages: give venvs made with
    tests/residue/thirdparty/requirements.txt, e.g. `--works
    pydantic,yaml native=VENV/bin/python`."""
    pythons = pythons or [(v, interpreter(v))
                          for v in ("pristine", "experiment")]
    print("| work (PYTHONMALLOC) | " + " | ".join(lab for lab, _ in pythons)
          + " | last: in do / outside |")
    print("|---" * (len(pythons) + 2) + "|")
    saved = os.environ.get("PYTHONMALLOC")
    try:
        for w in works:
            pymalloc, n = NATIVE_WORKS[w]
            os.environ.pop("PYTHONMALLOC", None)
            if pymalloc:
                os.environ["PYTHONMALLOC"] = pymalloc

            def per(py, mode):
                return (instructions(py, NATIVE_CHILD, w, str(n), mode)
                        - instructions(py, NATIVE_CHILD, w, "0", mode)) / n
            out = [per(py, "plain") for _, py in pythons]
            in_do = per(pythons[-1][1], "do")
            cells = ["%.1f" % out[0]] + ["%.1f (%+.2f %%)" % (
                p, 100 * (p / out[0] - 1)) for p in out[1:]]
            print("| %s (%s) | %s | %.1f: %.3fx |"
                  % (w, pymalloc or "default", " | ".join(cells), in_do,
                     in_do / out[-1]))
    finally:
        os.environ.pop("PYTHONMALLOC", None)
        if saved is not None:
            os.environ["PYTHONMALLOC"] = saved
