"""Attacks on the file-object hooks (patches 0014 and 0027: bufferedio.c and
textio.c call the file-object part of Include/internal/pycore_secret.h),
each with a control that finds the secret where the protection is absent.

The hooks promise: a buffer used in secret mode lives in the secret heap,
and once the buffer is secret, the bytes a read consumed are zeroed before
the read returns, the read data a reset discards and the written bytes a
flush wrote are zeroed, a seek never moves back into zeroed bytes, and text
written with a secret is flushed in secret mode even after do(). These
tests look into the buffer itself: a raw stream written in Python receives
a memoryview of the buffer in readinto() and write(), which gives its
address; the test reads the buffer's bytes there (ctypes.string_at) after
every operation and checks them against what the file object has consumed
so far. Secrets are random tokens (os.urandom) placed in the file's data at
known offsets; the control runs the same operations outside do(), where the
buffer stays ordinary and keeps them.

The end-to-end proof (the whole process scanned, nothing left in ordinary
or secret memory) is tests/test_residue_io.py.
"""

import ctypes
import gc
import io
import os
import random
import sys
import threading

import pytest

import secret

TOKEN = 16


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer),
                        ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]


def address(view):
    """The address of a buffer-protocol object's memory."""
    b = _PyBuffer()
    if _get_buffer(view, ctypes.byref(b), 0) != 0:
        raise OSError("PyObject_GetBuffer failed")
    try:
        return b.buf
    finally:
        _release_buffer(ctypes.byref(b))


def in_secret_heap(addr):
    info = secret.heap_info()
    return info["base"] <= addr < info["base"] + info["address_space"]


class SpyRaw(io.RawIOBase):
    """A seekable raw stream over bytes that notes where the buffered
    object above it keeps its buffer: the address of every memoryview
    readinto() and write() get. short: at most that many bytes a call;
    fail: a set of call numbers (1-based) that raise OSError; block: call
    numbers where write() would block (returns None)."""

    def __init__(self, data=b"", short=None, fail=(), block=()):
        self.data = bytearray(data)
        self.pos = 0
        self.short = short
        self.fail = set(fail)
        self.block = set(block)
        self.calls = 0
        self.seeks = 0
        self.fills = []       # (address, length) of readinto's views
        self.writes = []      # (address, length) of write's views
        self.yield_gil = False

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def _call(self):
        self.calls += 1
        if self.yield_gil:
            os.sched_yield()
        if self.calls in self.fail:
            raise OSError("raw stream fails (test)")

    def readinto(self, b):
        self.fills.append((address(b), len(b)))
        self._call()
        n = min(len(b), len(self.data) - self.pos)
        if self.short:
            n = min(n, self.short)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def write(self, b):
        self.writes.append((address(b), len(b)))
        self._call()
        if self.calls in self.block:
            return None
        n = len(b) if not self.short else min(len(b), self.short)
        end = self.pos + n
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[self.pos:end] = b[:n]
        self.pos = end
        return n

    def seek(self, offset, whence=0):
        self.seeks += 1
        self.pos = {0: 0, 1: self.pos, 2: len(self.data)}[whence] + offset
        return self.pos

    def tell(self):
        return self.pos


def tokens_data(rng, n, count):
    """n bytes of filler (newlines included) holding count random tokens:
    (data, [(offset, token)])."""
    data = bytearray(rng.randbytes(n))
    for i in range(0, n, 9):
        if rng.random() < 0.4:
            data[i] = 0x0A
    spots = sorted(rng.sample(range(0, n - TOKEN, TOKEN + 1), count))
    placed = []
    for off in spots:
        t = os.urandom(TOKEN)
        data[off:off + TOKEN] = t
        placed.append((off, t))
    return bytes(data), placed


def call(protect, fn, *args):
    return secret.do(fn, *args) if protect else fn(*args)


class Observer:
    """Reads a buffered object's buffer (base from the first fill of a
    whole buffer) and counts consumed tokens still in it."""

    def __init__(self, raw, size, placed):
        self.raw, self.size, self.placed = raw, size, placed
        self.base = None

    def find_base(self):
        for addr, n in self.raw.fills:
            if n == self.size:
                self.base = addr
        assert self.base is not None

    def memory(self):
        return ctypes.string_at(self.base, self.size)

    def consumed_left(self, pos):
        mem = self.memory()
        return [off for off, t in self.placed if off + TOKEN <= pos
                and t in mem]

    def any_left(self):
        mem = self.memory()
        return [off for off, t in self.placed if t in mem]


# -- readers: every read mixed, seeks back and forth -------------------------

def reader_op(rng, size, length):
    name = rng.choice(["read", "read1", "readinto", "readline", "readline",
                       "peek", "next", "seek_back", "seek_fwd", "seek_set",
                       "tell"])
    if name == "seek_set":
        return name, rng.randrange(length + 1)
    return name, rng.randrange(1, size)


def apply_reader(f, model, op):
    """Run op on f; check its result against model (data, [pos])."""
    data, at = model
    name, n = op
    pos = at[0]
    if name == "read":
        r = f.read(n)
        assert r == data[pos:pos + n], (name, n, pos)
    elif name == "read1":
        r = f.read1(n)
        assert r == data[pos:pos + len(r)] and len(r) <= n, (name, n, pos)
    elif name == "readinto":
        b = bytearray(n)
        k = f.readinto(b)
        r = bytes(b[:k])
        assert r == data[pos:pos + n], (name, n, pos)
    elif name in ("readline", "next"):
        end = data.find(b"\n", pos) + 1 or len(data)
        if name == "readline":
            end = min(end, pos + n)
            r = f.readline(n)
        else:
            r = next(f, b"")
        assert r == data[pos:end], (name, n, pos)
    elif name == "peek":
        r = f.peek(n)
        assert r[:1] == data[pos:pos + 1], (name, n, pos)
        assert r == data[pos:pos + len(r)], (name, n, pos)
        r = b""
    elif name == "seek_back":
        back = min(n, pos)
        assert f.seek(-back, 1) == pos - back
        at[0] = pos - back
        return
    elif name == "seek_fwd":
        fwd = min(n, len(data) - pos)
        assert f.seek(fwd, 1) == pos + fwd
        at[0] = pos + fwd
        return
    elif name == "seek_set":
        at[0] = n
        assert f.seek(n) == n
        return
    else:
        assert f.tell() == pos
        return
    at[0] = pos + len(r)


def run_reader(kind, seed, protect):
    """Random reads and seeks on a file object made outside do(); after
    each, the consumed tokens still in its buffer. Returns (violations,
    buffer in the secret heap)."""
    rng = random.Random(seed)
    size = rng.choice([64, 128, 512])
    data, placed = tokens_data(rng, rng.choice([700, 3000]), 12)
    raw = SpyRaw(data, short=rng.choice([None, None, 20, 37]))
    cls = io.BufferedReader if kind == "reader" else io.BufferedRandom
    f = cls(raw, size)
    obs = Observer(raw, size, placed)
    call(protect, f.peek, 1)          # the first fill, at the buffer's start
    obs.find_base()
    model = (data, [0])
    violations = []
    for _ in range(300):
        op = reader_op(rng, size, len(data))
        # Once the buffer is secret the zeroing does not depend on the
        # mode: half the operations run outside do().
        inside = rng.random() < 0.5
        call(protect and inside, apply_reader, f, model, op)
        left = obs.consumed_left(model[1][0])
        if left:
            violations.append((op, left))
    secret_buffer = in_secret_heap(obs.base)
    f.close()
    return violations, secret_buffer


@pytest.mark.parametrize("kind", ["reader", "random"])
@pytest.mark.parametrize("seed", range(6))
def test_consumed_bytes_are_zeroed_after_every_read(kind, seed):
    """Mixes of read, read1, readinto, readline, next, peek and seeks both
    ways (a raw stream that may read short): after every operation, no
    token the file object has consumed is left in its buffer, and every
    result is right (checked against the data). Control: the same
    sequence outside do() leaves consumed tokens in an ordinary buffer."""
    violations, secret_buffer = run_reader(kind, seed, True)
    assert secret_buffer
    assert violations == []
    control, control_secret = run_reader(kind, seed, False)
    assert not control_secret
    assert control, "the control found no consumed token in the buffer"


def test_seek_back_into_zeroed_bytes_reads_the_raw_stream():
    """Read past a token in do(), then seek back onto it: the buffer's
    copy is zeroed, so the seek must go to the raw stream (and the token
    read back is right). Control: outside do() the same seek stays inside
    the buffer (no raw seek) over the token still there."""
    for protect in (True, False):
        rng = random.Random(7)
        data, placed = tokens_data(rng, 400, 3)
        raw = SpyRaw(data)
        f = io.BufferedReader(raw, 512)
        obs = Observer(raw, 512, placed)
        off, token = placed[1]
        call(protect, f.read, off + TOKEN + 5)
        obs.find_base()
        seeks = raw.seeks
        for back in (TOKEN + 5, -1):
            if back == -1:
                f.seek(off)               # absolute, inside the buffer
            else:
                f.seek(-back, 1)          # relative
            assert f.read(TOKEN) == token
            f.seek(5, 1)
        if protect:
            assert raw.seeks > seeks      # served by the raw stream
        else:
            assert raw.seeks == seeks     # served by the buffer
            assert off in obs.consumed_left(off + TOKEN + 5)
        f.close()


def test_a_reader_initialized_again_starts_over():
    """__init__ called again on a reader used in do() (its zeroing had got
    to offset 300) gives it a new, ordinary buffer, read ahead outside
    do(): moved into the secret heap in do(), nothing of it is zeroed yet,
    so the first bytes consumed there are zeroed too. Control: outside
    do() they stay."""
    for protect in (True, False):
        token = os.urandom(TOKEN)
        data = b"a" * 10 + token + b"b" * 374
        f = io.BufferedReader(SpyRaw(data), 512)
        call(protect, f.read, 300)
        f.close()
        raw = SpyRaw(data)
        f.__init__(raw, 512)
        assert f.read(5) == data[:5]      # read ahead, no reset after it
        assert call(protect, f.read, 100) == data[5:105]
        # To the end: a fill at the buffer's start tells where it is now.
        assert call(protect, f.read, 300) == data[105:]
        base = [a for a, n in raw.fills if n == 512][-1]
        assert (token in ctypes.string_at(base, 512)) != protect
        f.close()


def test_random_write_seek_read_then_flush_leaves_no_token():
    """BufferedRandom: in do(), read past a token, write a secret over what
    follows (writes pending share the buffer), seek back and read both;
    after flush() the buffer holds no token at all (read data discarded and
    zeroed, written bytes zeroed), and the file is right. Control: outside
    do() both tokens stay in the buffer."""
    for protect in (True, False):
        rng = random.Random(3)
        data, placed = tokens_data(rng, 220, 2)    # one fill holds it all
        raw = SpyRaw(data)
        f = io.BufferedRandom(raw, 256)
        obs = Observer(raw, 256, placed)
        off, token = placed[0]
        written = os.urandom(TOKEN)
        obs.placed = placed + [(off + TOKEN + 2, written)]

        def work():
            assert f.read(off + TOKEN) == data[:off + TOKEN]
            f.seek(2, 1)
            f.write(written)
            f.seek(off)
            assert f.read(TOKEN) == token
            assert f.read(2) == data[off + TOKEN:off + TOKEN + 2]
            assert f.read(TOKEN) == written

        call(protect, work)
        obs.find_base()
        f.flush()
        left = obs.any_left()
        if protect:
            assert left == []
        else:
            assert len(left) >= 2
        f.close()
        expect = bytearray(data)
        expect[off + TOKEN + 2:off + 2 * TOKEN + 2] = written
        assert raw.data == expect


# -- writers: short writes, a raw stream that blocks or fails -----------------

@pytest.mark.parametrize("short", [None, 3, 7])
def test_written_secret_is_zeroed_once_flushed_outside_do(short):
    """A BufferedWriter made before do(), a secret written in it in
    pieces, flushed after do() through a raw stream that may write a few
    bytes a call: the buffer holds none of it once flushed. Control: the
    same writes outside do() leave it there."""
    for protect in (True, False):
        raw = SpyRaw(short=short)
        f = io.BufferedWriter(raw, 128)
        token = os.urandom(TOKEN)
        call(protect, lambda: [f.write(b"key=" + token[:5]),
                               f.write(token[5:] + b"\n")])
        f.flush()
        base = min(a for a, _ in raw.writes)
        mem = ctypes.string_at(base, 128)
        assert in_secret_heap(base) == protect
        assert (token in mem) != protect
        assert raw.data == b"key=" + token + b"\n"
        f.close()


def test_shift_after_a_blocked_flush_zeroes_what_it_left_behind():
    """A write that does not fit flushes; the raw stream writes part and
    then would block (BlockingIOError): the pending bytes, a token among
    them, move to the buffer's start. The place they left must not keep
    the token. Control: outside do() the old copy stays."""
    for protect in (True, False):
        raw = SpyRaw(short=30, block={2})
        f = io.BufferedWriter(raw, 64)
        token = os.urandom(TOKEN)
        head = b"h" * 40

        def work():
            f.write(head + token + b"tail")     # 60 bytes pending
            f.write(b"8 bytes!")                 # does not fit: flush
        call(protect, work)
        base = min(a for a, _ in raw.writes)
        mem = ctypes.string_at(base, 64)
        # Pending after the shift: head[30:] + token + tail + 8 bytes.
        assert mem.count(token) == (1 if protect else 2), mem
        f.flush()
        assert raw.data == head + token + b"tail" + b"8 bytes!"
        mem = ctypes.string_at(base, 64)
        assert (token in mem) != protect
        f.close()


def test_raw_errors_leave_no_consumed_token():
    """The raw stream fails (OSError) in the middle of reads and writes in
    do(): the reads that fail zero what they consumed, the data stays
    right, and what was written is zeroed once a later flush succeeds.
    Control: outside do() the tokens stay."""
    for protect in (True, False):
        rng = random.Random(11)
        data, placed = tokens_data(rng, 600, 6)
        raw = SpyRaw(data, short=40, fail={3, 6, 9})
        f = io.BufferedReader(raw, 64)
        obs = Observer(raw, 64, placed)
        model = (data, [0])
        call(protect, f.peek, 1)
        obs.find_base()
        errors = left = 0
        while model[1][0] < len(data):
            try:
                call(protect, apply_reader, f, model,
                     ("readline", 63))
            except OSError:
                errors += 1
                f.seek(model[1][0])     # where the model says it is
            left += len(obs.consumed_left(model[1][0]))
        assert errors == 3
        assert (left == 0) == protect
        f.close()

        raw = SpyRaw(fail={1, 2})
        w = io.BufferedWriter(raw, 64)
        token = os.urandom(TOKEN)
        call(protect, w.write, token)
        for _ in range(2):
            with pytest.raises(OSError):
                w.flush()
        w.flush()
        base = min(a for a, _ in raw.writes)
        assert (token in ctypes.string_at(base, 64)) != protect
        assert raw.data == token
        w.close()


# -- threads on one file object ---------------------------------------------

def test_threads_reading_one_file_in_and_out_of_do():
    """Four threads read one reader, two inside do() and two outside, in
    random sizes (the fast path without the lock, the slow path with it),
    a fifth peeks; the raw stream gives up the GIL in every call and the
    switch interval is at its minimum, so zeroing without the lock runs
    while another thread is in raw I/O, and the move into the secret heap
    happens while others wait for the lock. Every byte is read exactly
    once (the data is a counter: each piece says where it came from), and
    once all is read the buffer is all zeros. Control: all outside do(),
    the last fill stays.

    (readline() is left out: upstream's is not thread-safe with a raw
    stream that gives up the GIL - two threads waiting for the lock with
    the same partial line both take it - nor is flush() against reads. The
    experiment does not fix those.)"""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for protect in (True, False):
            data = b"".join(i.to_bytes(4, "big") for i in range(30000))
            raw = SpyRaw(data, short=97)
            raw.yield_gil = True
            f = io.BufferedReader(raw, 256)
            got = [[] for _ in range(4)]
            done = threading.Event()

            def reader(i):
                rng = random.Random(i)

                def loop():
                    while True:
                        piece = f.read(4 * rng.randrange(1, 80))
                        if not piece:
                            return
                        got[i].append(piece)
                if protect and i < 2:
                    secret.do(loop)
                else:
                    loop()

            def peeker():
                while not done.is_set():
                    f.peek(1)
                    os.sched_yield()

            ts = [threading.Thread(target=reader, args=(i,))
                  for i in random.Random(5).sample(range(4), 4)]
            pk = threading.Thread(target=peeker)
            for t in ts + [pk]:
                t.start()
            for t in ts:
                t.join()
            done.set()
            pk.join()
            pieces = sorted((int.from_bytes(p[:4], "big"), p)
                            for g in got for p in g)
            at = 0
            for n, p in pieces:
                assert 4 * n == at and p == data[at:at + len(p)], at
                at += len(p)
            assert at == len(data)
            base = [a for a, n in raw.fills if n == 256][-1]
            assert in_secret_heap(base) == protect
            mem = ctypes.string_at(base, 256)
            # Zero once freed, but for its first word: a free-list link
            # (the heap's or the thread cache's), an address in the heap.
            word = int.from_bytes(mem[:8], "little")
            erased = mem[8:] == bytes(248) and (
                word == 0 or in_secret_heap(word))
            assert erased == protect
            f.close()
    finally:
        sys.setswitchinterval(old)


# -- text -------------------------------------------------------------------

def text_stack(short=None):
    raw = SpyRaw(short=short)
    return raw, io.TextIOWrapper(io.BufferedWriter(raw, 256),
                                 encoding="utf-8")


def write_token(t):
    """In do(): a token made there (a secret str), written in pieces."""
    token = os.urandom(TOKEN).hex()
    t.write("k=")
    t.write(token)
    t.write("\n")
    return token


@pytest.mark.parametrize("before", [[], ["plain\n"], ["plain\n", "more\n"]])
def test_text_written_in_do_is_flushed_in_secret_mode_after_it(before):
    """Text written in do() and flushed after it: pending as one object,
    as a list made in do(), or as a list the wrapper made before do() with
    text written outside it. The flush runs in secret mode, so the buffer
    the bytes go to is in the secret heap, and zeroed once written.
    Control: the same writes outside do() go through an ordinary buffer
    that keeps the token."""
    for protect in (True, False):
        raw, t = text_stack()
        for piece in before:
            t.write(piece)                # pending, made outside do()
        token = call(protect, write_token, t)
        t.flush()
        base = min(a for a, _ in raw.writes)
        assert in_secret_heap(base) == protect
        mem = ctypes.string_at(base, 256)
        assert (token.encode() in mem) != protect
        assert raw.data == ("".join(before) + "k=" + token + "\n").encode()
        t.close()


def test_text_flag_survives_a_failed_flush():
    """A flush of secret text that fails before it takes the pending text
    (the secret heap refuses the joined bytes) leaves it pending and still
    marked: the next flush, outside do() too, runs in secret mode.
    Control: without the failure the first flush does it."""
    _testsecret = pytest.importorskip("_testsecret")
    for fail in (True, False):
        raw, t = text_stack()
        token = secret.do(write_token, t)
        if fail:
            _testsecret.fail_secret_allocations(0, 1)    # the join
            try:
                with pytest.raises(MemoryError):
                    t.flush()
            finally:
                _testsecret.fail_secret_allocations(-1)
            assert raw.writes == []
        t.flush()
        base = min(a for a, _ in raw.writes)
        assert in_secret_heap(base)
        assert token.encode() not in ctypes.string_at(base, 256)
        assert raw.data == ("k=" + token + "\n").encode()
        t.close()


class Pipe(SpyRaw):
    """A raw stream without seek or tell, as a pipe or a socket is."""

    def seekable(self):
        return False

    def seek(self, offset, whence=0):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")


@pytest.mark.parametrize("how", ["readline", "read"])
def test_text_reader_frees_a_secret_chunk_read_to_its_end(how):
    """A text reader without tell() (a pipe) reading in do() a decoded
    chunk to its end drops it at once: the wrapper refers to no string
    holding the token (gc.get_referents sees its decoded chunk). Control:
    outside do() the chunk stays until the next read."""
    for protect in (True, False):
        token = os.urandom(TOKEN).hex()
        data = ("k=" + token + "\n").encode()
        t = io.TextIOWrapper(io.BufferedReader(Pipe(data)),
                             encoding="ascii")
        if how == "readline":
            line = call(protect, t.readline)
        else:
            line = call(protect, t.read, len(data))
        assert line == data.decode()
        held = [o for o in gc.get_referents(t)
                if isinstance(o, str) and token in o]
        assert (held == []) == protect, held
        t.close()
