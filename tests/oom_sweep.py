"""Out-of-memory injection sweep in secret mode (spec §3.4: exhaustion
raises MemoryError, it does not crash). Run by tests/test_heap_oom.py, or
by hand:

    python tests/oom_sweep.py [WORKLOAD ...] [--points N] [--mode M]
                              [--seed S] [--from N]

For each workload it counts the secret allocations one secret.do() of it
makes, then, at each sampled injection point n, runs it again in do()
with a failure injected (_testsecret.fail_secret_allocations):
  all      every secret allocation from the nth on fails (the heap's
           reserve, which serves only its MemoryError's making and
           unwinding, aside): a heap that is full from then on;
  one      only the nth fails (a transient failure: the code goes on);
  reserve  every one from the nth on fails, the reserve's too (the last
           resorts: a MemoryError in ordinary memory, the static one).
Each run must return the workload's result or raise the heap's
MemoryError (its message says the secret heap is full); in mode "one" a
MemoryError without that message is accepted too ("MemoryError*": the
allocations after the failure succeed, and the first one that does clears
the failure, so that a failure C code handled is not blamed for a later
MemoryError). After each run the process must be sound (a full
collection, the workload run again outside any injection). It prints one
JSON line: per workload and mode, the points tried and what each gave. A
crash kills the process: stderr's last "at" line names the point (rerun
it with --from).

Every point of every workload (on demand: 52,158 runs, 1 to 1.5 minutes
on 2 cores; the tests run a sample of 100 points per workload, about
4 s):
    python tests/oom_sweep.py --points 100000
"""

import base64
import collections
import decimal
import functools
import gc
import hashlib
import hmac
import io
import itertools
import json
import operator
import os
import pickle
import random
import re
import string
import struct
import sys
import faulthandler

import secret
import _testsecret as T

faulthandler.enable()


# --- workloads: each returns a value that tells a full run from another ---

def w_json():
    doc = {"k%d" % i: [i, str(i) * 3, {"x": i / 7, "y": None, "z": True}]
           for i in range(40)}
    text = json.dumps(doc, sort_keys=True, indent=1)
    back = json.loads(text)
    return len(text), sorted(back)[:3], back["k7"][2]["x"]


def w_re():
    rx = re.compile(r"(?P<key>[a-z]+)(\d+)=(?P<val>[^;]*);", re.I)
    text = "".join("key%d=%s;" % (i, "v" * (i % 9)) for i in range(60))
    found = [m.groupdict() for m in rx.finditer(text)]
    sub = re.sub(r"\d+", lambda m: m.group(0)[::-1], text)
    parts = re.split(r"[=;]", text)
    return len(found), found[5], len(sub), len(parts)


def w_dict_set_list():
    d = {}
    for i in range(300):
        d.setdefault("k%d" % (i % 150), []).append(i)
    d2 = dict(d)
    d2.update((str(i), i) for i in range(100))
    items = list(d.items())
    rev = list(reversed(d2))
    s = set(range(200)) | {str(i) for i in range(50)}
    s2 = frozenset(s) - set(range(0, 200, 3))
    lst = list(range(500))
    lst.sort(key=lambda v: -v)
    lst[10:20] = [0] * 30
    del lst[::7]
    it = iter(d.items())
    first = next(it)
    return (len(d), len(d2), len(items), rev[0], len(s), len(s2), len(lst),
            first[0], d.pop("k3"), {**d2}.get("5"))


def w_classes():
    class Base:
        __slots__ = ("a", "b")

        def __init__(self, a):
            self.a = a
            self.b = [a]

        @property
        def c(self):
            return self.a * 2

    class Child(Base):
        __slots__ = ("d",)

        def __init__(self, a):
            super().__init__(a)
            self.d = {"a": a}

    class Plain:
        x = 1

        def __init_subclass__(cls, **kw):
            cls.tag = cls.__name__

    Dyn = type("Dyn", (Plain,), {"y": lambda self: self.x + 1,
                                 "__repr__": lambda self: "Dyn()"})
    objs = [Child(i) for i in range(50)]
    return (sum(o.c for o in objs), Dyn().y(), Dyn.tag, repr(Dyn()),
            Child.__mro__[1].__name__)


def w_format():
    out = []
    for i in range(60):
        out.append(f"{i:08d}|{i * 1.5:.3f}|{'x' * (i % 7)!r}|{i:#x}")
        out.append("%s-%d-%r" % ("a" * i, i, (i, "b")))
        out.append("{0}{1!s:>5}{k}".format(i, [i], k={"i": i}))
    t = "\n".join(out)
    tmpl = string.Template("$who likes $what").substitute(who="a", what="b")
    return len(t), t.upper().count("X"), t.split("|")[3], tmpl


def w_exceptions():
    caught = []
    for i in range(30):
        try:
            try:
                {}["k%d" % i]
            except KeyError as e:
                raise ValueError("wrapped %d" % i) from e
            finally:
                caught.append(i)
        except ValueError as e:
            caught.append(str(e))
    try:
        raise ExceptionGroup("g", [TypeError("t"), OSError(2, "o")])
    except* TypeError as eg:
        caught.append(len(eg.exceptions))
    except* OSError:
        caught.append("os")

    def gen():
        try:
            yield 1
            yield 2
        finally:
            caught.append("closed")
    g = gen()
    next(g)
    g.close()
    return len(caught), caught[-1], caught[3]


def w_bytes():
    ba = bytearray()
    for i in range(200):
        ba += bytes([i % 256]) * (i * 13 % 700)
    b = bytes(ba)
    parts = b.split(b"\x05")
    joined = b"-".join(parts[:50])
    hexed = b[:2000].hex()
    packed = struct.pack("<100I", *range(100))
    view = memoryview(ba)[100:5000].tobytes()
    return (len(ba), len(parts), len(joined), hexed[:20],
            struct.unpack("<100I", packed)[50], len(view))


def w_numbers():
    x = 0
    for i in range(1, 80):
        x += (i ** 37) // (i + 1) + int(str(i * 10 ** 20))
    decimal.getcontext().prec = 40
    d = decimal.Decimal(1)
    for i in range(60):
        d = d * decimal.Decimal("1.01") + decimal.Decimal(i) / 7
    f = sum(i / 3 for i in range(200))
    fr = float.fromhex((1.5).hex()) * 2
    return len(str(x)), str(d)[:30], round(f, 6), fr, x % 1000003


def w_misc():
    data = {"a": [1, 2.5, "x" * 100, (1, 2), {3, 4}, b"bytes"],
            "n": list(range(100))}
    p = pickle.loads(pickle.dumps(data, 5))
    dq = collections.deque(range(100))
    dq.rotate(7)
    od = collections.OrderedDict((i, str(i)) for i in range(50))
    od.move_to_end(5)
    cnt = collections.Counter("abracadabra" * 20)
    ch = list(itertools.chain(map(operator.neg, dq), range(20)))
    part = functools.partial(lambda a, b: a + b, 10 ** 30)
    acc = list(itertools.accumulate(range(50), part and operator.add))
    sio = io.StringIO()
    sio.write("line\n" * 100)
    srt = sorted(((i * 7919) % 101, str(i)) for i in range(200))
    return (len(p["n"]), dq[0], list(od)[-1], cnt.most_common(1), len(ch),
            part(1), acc[-1], len(sio.getvalue()), srt[0])


def w_crypto():
    key = bytes(range(32))
    out = []
    for i in range(20):
        mac = hmac.new(key, b"msg%d" % i, "sha256").hexdigest()
        out.append(base64.b64encode(bytes.fromhex(mac)).decode())
        out.append(hashlib.sha256(mac.encode()).digest().hex())
    dk = hashlib.pbkdf2_hmac("sha256", key, b"salt", 10).hex()
    return len("".join(out)), out[3], dk[:16]


WORKLOADS = {
    "json": w_json, "re": w_re, "dict_set_list": w_dict_set_list,
    "classes": w_classes, "format": w_format, "exceptions": w_exceptions,
    "bytes": w_bytes, "numbers": w_numbers, "misc": w_misc,
    "crypto": w_crypto,
}


def allocations(fn):
    before = secret.heap_info()["allocations"]
    secret.do(fn)
    return secret.heap_info()["allocations"] - before


def run_point(fn, n, mode, expected):
    """What do(fn) gives with the failure injected at point n."""
    if mode == "one":
        T.fail_secret_allocations(n, 1)
    else:
        T.fail_secret_allocations(n, -1, mode == "reserve")
    try:
        got = secret.do(fn)
        kind = "ok" if got == expected else "WRONG result: %r" % (got,)
    except MemoryError as e:
        kind = "MemoryError" if "secret heap" in str(e) else "MemoryError*"
    except ValueError as e:
        # OpenSSL's own allocations are secret in do() (issue 23): when
        # one fails, OpenSSL reports it its own way, which _hashlib and
        # _hmac raise as ValueError("[... routines] ..."), as upstream
        # does for any malloc failure in OpenSSL ("no reason supplied":
        # OpenSSL could not even record the error).
        if re.match(r"\[[a-z ]+ routines\] |no reason supplied$", str(e)):
            kind = "NativeError"
        else:
            kind = "%s: %s" % (type(e).__name__, str(e)[:120])
    except BaseException as e:
        kind = "%s: %s" % (type(e).__name__, str(e)[:120])
    finally:
        T.fail_secret_allocations(-1)
    return kind


def main():
    args = sys.argv[1:]
    opts = {"--points": "150", "--mode": "all,one,reserve", "--seed": None,
            "--from": "0"}
    names = []
    while args:
        a = args.pop(0)
        if a in opts:
            opts[a] = args.pop(0)
        else:
            names.append(a)
    names = names or list(WORKLOADS)
    points = int(opts["--points"])
    start = int(opts["--from"])
    seed = (int(opts["--seed"]) if opts["--seed"] is not None
            else int.from_bytes(os.urandom(4), "little"))
    rng = random.Random(seed)
    report = {"seed": seed, "workloads": {}}
    for name in names:
        fn = WORKLOADS[name]
        expected = secret.do(fn)
        total = allocations(fn)
        # Every point when there are few; else the first 40 (the setup of
        # a workload, where the most distinct paths are) and a sample.
        if total <= points:
            sample = list(range(total + 1))
        else:
            sample = sorted(set(range(40)) | set(
                rng.sample(range(40, total + 1), points - 40)))
        sample = [n for n in sample if n >= start]
        res = {"allocations": total}
        for mode in opts["--mode"].split(","):
            kinds = collections.Counter()
            bad = []
            for n in sample:
                print("at", name, mode, n, file=sys.stderr, flush=True)
                kind = run_point(fn, n, mode, expected)
                # The process is sound: its objects (a full collection
                # walks them all) and the workload, run again.
                gc.collect()
                again = secret.do(fn)
                if again != expected:
                    kind = "WRONG after: %r" % (again,)
                kinds[kind.split(":")[0]] += 1
                if kind not in ("ok", "MemoryError", "NativeError") and not (
                        mode == "one" and kind == "MemoryError*"):
                    bad.append((n, kind))
            res[mode] = {"tried": len(sample), "kinds": dict(kinds),
                         "bad": bad[:20]}
        report["workloads"][name] = res
    print(json.dumps(report))


if __name__ == "__main__":
    main()
