"""Programs for tests/test_gevent.py, run in a child interpreter because
they monkey-patch the standard library (gevent.monkey.patch_all()), which
the test process must not be.

    python gevent_programs.py NAME [ARG ...]

Prints one JSON line: what the program recorded. Every step of every
greenlet records (expected, mode, secret_alloc, hits): whether it should
run in secret mode, secret.enabled(), whether what it allocates is secret
(None: some of it is and some not) and, in a greenlet that should not be
in secret mode, the copies of the protected greenlets' stack pattern found
in the thread's C stack below its frame. Secrets and patterns are random.
"""

from gevent import monkey

monkey.patch_all()

import hmac  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

import gevent  # noqa: E402
import gevent.queue  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

import _testsecret as T  # noqa: E402
import secret  # noqa: E402


def new_pattern():
    p = os.urandom(8)
    while b"\0" in p:
        p = os.urandom(8)
    return p


_range = []


def is_secret(obj):
    """Is obj a block of the secret heap?"""
    if not _range:
        secret.protections()        # reserves the heap
        info = secret.heap_info()
        _range[:] = [info["base"], info["reserved"]]
    base, size = _range
    return base <= id(obj) < base + size


def frames_of(exc):
    """Names of the functions in exc's traceback and in those of the
    exceptions chained to it."""
    names, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        names += [f.f_code.co_name for f, _ in traceback.walk_tb(
            e.__traceback__)]
        todo += [e.__cause__, e.__context__]
    return names


class Recorder:
    def __init__(self):
        self.pattern = new_pattern()
        self.records = []

    def check(self, expected, where=""):
        # What the step allocates, of several kinds (free lists included):
        # all secret in a protected step, none in another. expected None:
        # either, as long as mode and allocations agree.
        made = [bytearray(16), [expected], {"k": expected}, float(
            len(self.records)) + 0.5, str(len(self.records)) + "x", (1, [])]
        kinds = {is_secret(o) for o in made}
        hits = 0
        if not expected and not secret.enabled():
            hits = T.call_and_scan(self.pattern, int)[1]
        self.records.append((expected, secret.enabled(),
                             kinds.pop() if len(kinds) == 1 else None,
                             hits, where))

    def leave_pattern(self, depth=4096):
        T.write_stack_pattern(self.pattern, depth)


# --- the generated programs -------------------------------------------------

class Escaped(Exception):
    pass


class Program(Recorder):
    """A random program: greenlets, some protected (their body runs in
    secret.do), each a random sequence of actions that switch to the hub
    or to other greenlets; some are killed, some run under a
    gevent.Timeout that fires while they are parked."""

    ACTIONS = ["sleep0", "sleep", "nested", "spawn", "do", "do_switch",
               "raise", "queue", "socket", "event", "timeout", "escape"]

    def __init__(self, seed, wrap):
        super().__init__()
        self.rng = random.Random(seed)
        self.wrap = wrap
        self.escaped = []       # (protected, body frames in traceback)
        self.ended = []         # (protected, how, mode right after)

    def inner(self, expected):
        self.check(expected, "inner")
        if expected:
            self.leave_pattern(2048)
        gevent.sleep(0)
        self.check(expected, "inner")

    def leaf(self, where):
        # Spawned by a body: a greenlet made inside do runs in secret mode
        # (as a thread or a task started there); one made outside does
        # not.
        expected = where == "leaf-in-do"
        self.check(expected, where)
        if expected:
            self.leave_pattern(1024)
        gevent.sleep(0)
        self.check(expected, where)
        return bytearray(8)

    def raiser(self, expected):
        gevent.sleep(0)
        self.check(expected, "raiser")
        raise KeyError("k")

    def body(self, protected, plan, queue, event):
        try:
            for act in plan:
                self.check(protected, act)
                if protected:
                    self.leave_pattern()
                if act == "sleep0":
                    gevent.sleep(0)
                elif act == "sleep":
                    gevent.sleep(self.rng.random() / 2000)
                elif act == "nested":
                    # do inside do, switching away inside the inner one
                    if protected and self.wrap:
                        secret.do(self.inner, True)
                    else:
                        self.inner(protected)
                elif act == "spawn":
                    gevent.spawn(self.leaf, "leaf-in-do" if protected
                                 else "leaf").join()
                elif act == "do":
                    secret.do(T.write_stack_pattern, self.pattern, 1024)
                elif act == "do_switch":
                    # any greenlet's own do() that switches inside
                    if self.wrap:
                        secret.do(self.inner, True)
                    else:
                        self.inner(protected)
                elif act == "raise":
                    try:
                        self.raiser(protected)
                    except KeyError:
                        pass
                elif act == "queue":
                    queue.put(bytes(8))
                    gevent.sleep(0)
                elif act == "socket":
                    # a monkey-patched socket read that blocks: the
                    # greenlet parks in the hub until another greenlet
                    # writes
                    a, b = socket.socketpair()
                    w = gevent.spawn_later(self.rng.random() / 4000,
                                           b.sendall, b"12345678")
                    got = b""
                    while len(got) < 8:
                        got += a.recv(8 - len(got))
                    w.join()
                    a.close()
                    b.close()
                elif act == "event":
                    # (waiting on an Event already set can hang in gevent
                    # when a notification is pending: only wait unset)
                    t = self.rng.random() / 2000
                    if not event.is_set():
                        event.wait(timeout=t)
                    else:
                        gevent.sleep(0)
                elif act == "timeout":
                    try:
                        with gevent.Timeout(0.0001):
                            gevent.sleep(1)
                    except gevent.Timeout:
                        pass
                elif act == "escape":
                    gevent.sleep(0)
                    self.check(protected, act)
                    raise Escaped(protected)
                self.check(protected, act)
        finally:
            # killed or timed out while parked: the exception is raised
            # here, still inside do
            self.check(protected, "finally")

    def task(self, protected, plan, queue, event, timeout):
        args = (protected, plan, queue, event)
        how = "returned"
        try:
            if timeout is not None:
                with gevent.Timeout(timeout):
                    self.run_body(protected, args)
            else:
                self.run_body(protected, args)
        except gevent.Timeout:
            how = "timeout"
        except Escaped as e:
            how = "escaped"
            self.escaped.append((protected, "body" in frames_of(e)))
        except gevent.GreenletExit:
            how = "killed"
            self.ended.append((protected, how, secret.enabled()))
            raise
        self.ended.append((protected, how, secret.enabled()))
        self.check(False, "after")

    def run_body(self, protected, args):
        if protected and self.wrap:
            secret.do(self.body, *args)
        else:
            self.body(*args)

    def drain(self, queue):
        while True:
            queue.get()
            self.check(False, "drain")

    def ticker(self):
        while True:
            self.check(False, "ticker")
            gevent.sleep(self.rng.random() / 4000)

    def main(self):
        queue = gevent.queue.Queue()
        event = gevent.event.Event()
        helpers = [gevent.spawn(self.drain, queue),
                   gevent.spawn(self.ticker)]
        tasks = []
        for i in range(self.rng.randint(2, 6)):
            protected = self.rng.random() < 0.5 or i == 0
            plan = [self.rng.choice(self.ACTIONS)
                    for _ in range(self.rng.randint(1, 8))]
            timeout = None
            if self.rng.random() < 0.2:
                timeout = self.rng.random() / 1000
            tasks.append(gevent.spawn(self.task, protected, plan, queue,
                                      event, timeout))
        for t in tasks:
            if self.rng.random() < 0.15:
                gevent.sleep(self.rng.random() / 2000)
                t.kill(block=False)
        gevent.sleep(self.rng.random() / 2000)
        event.set()
        gevent.joinall(tasks)
        gevent.killall(helpers)
        self.check(False, "main")


def interleavings(first, n, wrap):
    wrap = wrap == "protected"
    out = []
    for seed in range(int(first), int(first) + int(n)):
        prog = Program(seed, wrap)
        prog.main()
        out.append({"seed": seed, "records": prog.records,
                    "escaped": prog.escaped, "ended": prog.ended})
    return out


def spawn_in_do(wrap):
    """A greenlet spawned inside do (or not: the control) and joined there;
    it runs while the spawning greenlet waits inside do, and a greenlet
    made outside runs meanwhile."""
    wrap = wrap == "protected"
    rec = Recorder()
    made = []

    def leaf():
        for _ in range(3):
            rec.check(True, "leaf")
            rec.leave_pattern()
            gevent.sleep(0)

    def outsider():
        for _ in range(4):
            rec.check(False, "outsider")
            gevent.sleep(0)

    def body():
        rec.check(True, "body")
        rec.leave_pattern()
        g = gevent.spawn(leaf)
        made.append(is_secret(g))
        g.join()
        rec.check(True, "body")

    gevent.sleep(0)                     # the hub, made outside
    o = gevent.spawn(outsider)
    secret.do(body) if wrap else body()
    rec.check(False, "main")
    o.join()
    return {"records": rec.records, "made_secret": made[0]}


def first_use_in_do(wrap, hub_first):
    """The program's first gevent wait made inside do (or not: the
    control), with gevent's hub made at start-up (hub_first "1") or by
    that wait. Records the mode of the hub's callbacks ("hub"): expected
    outside secret mode, which holds only when the hub was made first."""
    wrap = wrap == "protected"
    rec = Recorder()
    if hub_first == "1":
        gevent.get_hub()

    def first():
        rec.check(True, "first")
        rec.leave_pattern()
        gevent.sleep(0.0005)            # makes the hub, here
        rec.check(True, "first")

    def other():
        for _ in range(3):
            rec.check(False, "other")
            # and a callback, which the hub runs in its own greenlet
            gevent.get_hub().loop.run_callback(rec.check, False, "hub")
            gevent.sleep(0.0002)

    secret.do(first) if wrap else first()
    rec.check(False, "main")
    gs = [gevent.spawn(other) for _ in range(3)]
    gevent.sleep(0.0005)
    rec.check(False, "main")
    h = gevent.spawn(secret.do, first) if wrap else gevent.spawn(first)
    gevent.joinall(gs + [h])
    rec.check(False, "main")
    return {"records": rec.records,
            "hub_secret": is_secret(gevent.get_hub())}


# --- a server ----------------------------------------------------------------

def server(clients, wrap):
    """A StreamServer on loopback whose handler verifies an HMAC-SHA256
    token with a key read from a file, in secret.do (or not: the
    control), parking on its socket and in gevent.sleep inside; clients
    connect concurrently and a ticker greenlet runs meanwhile."""
    wrap = wrap == "protected"
    clients = int(clients)
    rec = Recorder()
    fd, key_path = tempfile.mkstemp()
    os.write(fd, os.urandom(32))
    os.close(fd)
    msg = b"POST /v1/charge"

    def handle(sock):
        rec.check(True, "start")
        with open(key_path, "rb") as f:
            key = f.read()
        rec.check(True, "key")
        rec.leave_pattern()
        n = int.from_bytes(sock.recv(1), "big")     # parks
        rec.check(True, "recv1")
        rec.leave_pattern()
        body = b""
        while len(body) < n + 32:
            body += sock.recv(n + 32 - len(body))   # parks
            rec.check(True, "recv")
            rec.leave_pattern()
        gevent.sleep(0.0002)                        # parks
        rec.check(True, "sleep")
        tag = hmac.new(key, body[:n], "sha256").digest()
        rec.leave_pattern()
        gevent.sleep(0)
        rec.check(True, "sleep0")
        ok = hmac.compare_digest(tag, body[n:])
        sock.sendall(b"ok" if ok else b"no")        # may park
        rec.check(True, "send")
        return ok

    modes_out = []

    def on_client(sock, addr):
        if wrap:
            ok = secret.do(handle, sock)
        else:
            ok = handle(sock)
        modes_out.append((ok, secret.enabled()))
        rec.check(False, "on_client")
        sock.close()

    def ticker():
        while True:
            rec.check(False, "ticker")
            gevent.sleep(0.0001)

    def client(i):
        with open(key_path, "rb") as f:
            key = f.read()
        good = i % 2 == 0
        tag = hmac.new(key if good else bytes(32), msg, "sha256").digest()
        del key
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(bytes([len(msg)]))
        gevent.sleep(0.0003)
        c.sendall(msg[:5])
        gevent.sleep(0.0003)
        c.sendall(msg[5:] + tag)
        answer = b""
        while len(answer) < 2:
            chunk = c.recv(2)
            if not chunk:
                break
            answer += chunk
        c.close()
        rec.check(False, "client")
        return answer == (b"ok" if good else b"no")

    srv = StreamServer(("127.0.0.1", 0), on_client)
    srv.start()
    port = srv.server_port
    tick = gevent.spawn(ticker)
    cs = [gevent.spawn(client, i) for i in range(clients)]
    gevent.joinall(cs)
    srv.stop()
    tick.kill()
    os.unlink(key_path)
    return {"records": rec.records, "answers": [c.value for c in cs],
            "handlers": modes_out}


# --- a greenlet parked inside do, ended from outside -------------------------

def parked(how, wrap):
    """A greenlet in do (or not: the control) reads a key and parks on a
    socket read nobody answers; another greenlet runs meanwhile; then the
    parked one is ended while parked: by a gevent.Timeout (how="timeout"),
    Greenlet.kill() (how="kill") or kill() with an exception to raise in
    it (how="throw")."""
    wrap = wrap == "protected"
    rec = Recorder()
    a, b = socket.socketpair()
    out = {}

    def body():
        key = bytearray(os.urandom(32))
        try:
            rec.check(True, "before")
            rec.leave_pattern()
            a.recv(1)                       # parks for good
        finally:
            rec.check(True, "finally")
            out["key_secret"] = is_secret(key)
            rec.leave_pattern()

    def run():
        try:
            if how == "timeout":
                with gevent.Timeout(0.002):
                    secret.do(body) if wrap else body()
            else:
                secret.do(body) if wrap else body()
        except BaseException as e:
            out["exc"] = type(e).__name__
            out["frames"] = frames_of(e)
            out["mode_after"] = secret.enabled()
            rec.check(False, "after")
            if isinstance(e, gevent.GreenletExit):
                raise

    def other():
        for _ in range(5):
            rec.check(False, "other")
            gevent.sleep(0.0005)

    g = gevent.spawn(run)
    o = gevent.spawn(other)
    gevent.sleep(0.001)
    if how == "kill":
        g.kill()
    elif how == "throw":
        g.kill(ValueError("thrown in"))
    g.join()
    o.join()
    rec.check(False, "main")
    a.close()
    b.close()
    out["records"] = rec.records
    return out


# --- a switch out erases the stack below ---------------------------------------

def switch_erases(depth, wrap):
    """Greenlet A (in do, or not: the control) leaves a pattern `depth`
    bytes deep on the C stack and switches to the hub; greenlet B, run
    next, counts the copies in the thread's stack below its frame."""
    wrap = wrap == "protected"
    rec = Recorder()
    depth = int(depth)
    hits = []

    def a():
        for _ in range(3):
            rec.leave_pattern(depth)
            gevent.sleep(0)

    def b():
        for _ in range(3):
            hits.append(T.call_and_scan(rec.pattern, int)[1])
            gevent.sleep(0)

    ga = gevent.spawn(secret.do, a) if wrap else gevent.spawn(a)
    gb = gevent.spawn(b)
    gevent.joinall([ga, gb])
    return {"hits": hits}


# --- a parked handler's frames -------------------------------------------------

def parked_copy(wrap):
    """A handler greenlet (in do, or not: the control) holds a pattern in a
    C frame of its own while it parks on a monkey-patched socket read; a
    greenlet that runs meanwhile counts the pattern's copies in the
    process's writable memory outside the secret heap: in the thread's
    stack and elsewhere (where greenlet copies the parked stack)."""
    wrap = wrap == "protected"
    # the needle itself is a secret block: the count skips the secret heap
    p = secret.do(new_pattern)
    info = secret.heap_info()
    base, size = info["base"], info["reserved"]

    def copies():
        stack = other = 0
        with open("/proc/self/maps") as f:
            lines = f.readlines()
        for line in lines:
            addr, rest = line.split(" ", 1)
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if "rw" not in rest.split()[0] or "[vvar" in line \
                    or base <= lo < base + size:
                continue
            n = T.count_in_range(lo, hi - lo, p)
            if "[stack]" in line:
                stack += n
            else:
                other += n
        return stack, other

    # what the count itself leaves on the stack (the pattern is loaded
    # into a C local to search with), before anything wrote it
    out = [("baseline", copies())]
    for gap in (1024, 4096, 32768):
        a, b = socket.socketpair()

        def handler():
            # p at the bottom of a C frame of gap bytes; from below it, the
            # read parks this greenlet in the hub
            T.write_gapped(p, gap, 2, lambda: a.recv(1))

        g = gevent.spawn(secret.do, handler) if wrap else \
            gevent.spawn(handler)
        gevent.sleep(0.001)
        out.append(("parked", copies()))
        b.sendall(b"x")
        g.join()
        out.append(("done", copies()))
        a.close()
        b.close()
    return out


def main(argv):
    name, *args = argv
    result = {"interleavings": interleavings, "server": server,
              "parked": parked, "switch_erases": switch_erases,
              "parked_copy": parked_copy,
              "first_use_in_do": first_use_in_do,
              "spawn_in_do": spawn_in_do}[name](*args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
