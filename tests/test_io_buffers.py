"""Buffered and text I/O in secret mode (patch 0014): a file object made
before do() and read or written inside it keeps nothing of the secret in
ordinary memory, and still reads and writes what it should.

The erasure itself is proved by the residue scenarios pipe_line,
pipe_text, socket_file, file_reader, text_writer and binary_writer
(tests/test_residue_scenarios.py: each control finds the secret, in the
file object's buffer among other places; each protected run finds none).
Here: random sequences of reads, seeks, peeks and writes on file objects
made outside do(), each operation run in do() or not, checked against a
model of the file (binary) or against the same sequence run outside do()
(text); the buffer's move into the secret heap and its zeroing at close();
running out of secret heap fails the operation instead of leaving the data
in ordinary memory.
"""

import io
import os
import random
import subprocess
import sys
import textwrap

import pytest

import secret

SEEDS = range(12)


def data_for(rng, n):
    """n random bytes with newlines, so that readline has lines to find."""
    raw = bytearray(rng.randbytes(n))
    for i in range(0, n, 7):
        if rng.random() < 0.4:
            raw[i] = 0x0A
    return bytes(raw)


def binary_op(rng, writable, readable):
    ops = []
    if readable:
        ops += ["read", "read1", "readline", "readinto", "peek", "next",
                "read_all"]
    if writable:
        ops += ["write", "write", "flush"]
    ops += ["seek_set", "seek_cur", "tell"]
    name = rng.choice(ops)
    n = rng.choice([0, 1, 3, 7, 15, 16, 17, 40, 100])
    return name, n, rng.randbytes(rng.choice([1, 5, 16, 33, 70]))


class Model:
    """What a file object must return: the file's bytes and the position."""

    def __init__(self, content):
        self.data = bytearray(content)
        self.pos = 0

    def take(self, n):
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def line(self, limit):
        rest = self.data[self.pos:]
        end = rest.find(b"\n") + 1 or len(rest)
        if limit > 0:
            end = min(end, limit)
        return self.take(end)


def check_binary(f, m, op):
    """Run op on f and check it against the model m. read1() and peek()
    may return fewer bytes than asked (how much is buffered is not part of
    their contract); everything else is exact."""
    name, n, blob = op
    where = "%s(%d) at %d" % (name, n, m.pos)
    if name == "read":
        assert f.read(n) == m.take(n), where
    elif name == "read_all":
        assert f.read() == m.take(len(m.data)), where
    elif name == "read1":
        r = f.read1(n)
        assert len(r) <= n and (r or not n or m.pos >= len(m.data)), where
        assert r == m.take(len(r)), where
    elif name == "readline":
        assert f.readline(n if n else -1) == m.line(n), where
    elif name == "readinto":
        b = bytearray(n)
        k = f.readinto(b)
        assert bytes(b[:k]) == m.take(n), where
    elif name == "peek":
        r = f.peek(n)
        assert r[:1] == bytes(m.data[m.pos:m.pos + 1]), where
        if r:
            assert r == bytes(m.data[m.pos:m.pos + len(r)]), where
    elif name == "next":
        assert next(f, None) == (m.line(0) or None), where
    elif name == "write":
        assert f.write(blob) == len(blob), where
        if m.pos > len(m.data):
            m.data.extend(bytes(m.pos - len(m.data)))
        m.data[m.pos:m.pos + len(blob)] = blob
        m.pos += len(blob)
    elif name == "flush":
        f.flush()
    elif name == "seek_set":
        m.pos = n % (len(m.data) + 1)
        assert f.seek(m.pos) == m.pos, where
    elif name == "seek_cur":
        back = min(n // 2, m.pos)
        m.pos -= back
        assert f.seek(-back, 1) == m.pos, where
    elif name == "tell":
        assert f.tell() == m.pos, where
    else:
        raise AssertionError(name)


def run_binary(path, content, kind, buffer_size, ops, in_do):
    with open(path, "wb") as f:
        f.write(content)
    raw = io.FileIO(path, "r+" if kind != "reader" else "r")
    cls = {"reader": io.BufferedReader, "writer": io.BufferedWriter,
           "random": io.BufferedRandom}[kind]
    f = cls(raw, buffer_size)        # made outside do(), as sys.stdin is
    m = Model(content)
    for op, protect in zip(ops, in_do):
        if protect:
            secret.do(check_binary, f, m, op)
        else:
            check_binary(f, m, op)
    f.close()
    with open(path, "rb") as g:
        assert g.read() == m.data


@pytest.mark.parametrize("kind", ["reader", "writer", "random"])
@pytest.mark.parametrize("seed", SEEDS)
def test_buffered_io_in_and_out_of_do_is_correct(tmp_path, kind, seed):
    """Random reads, seeks, peeks and writes on a file object made outside
    do(), each run in do() or not, checked against a model of the file;
    and the same sequence all outside do() (the model's own control)."""
    rng = random.Random(seed)
    content = data_for(rng, rng.choice([50, 300, 2000]))
    buffer_size = rng.choice([8, 16, 64, 4096])
    ops = [binary_op(rng, kind != "reader", kind != "writer")
           for _ in range(200)]
    in_do = [rng.random() < 0.5 for _ in ops]
    path = str(tmp_path / "f")
    run_binary(path, content, kind, buffer_size, ops, [False] * len(ops))
    run_binary(path, content, kind, buffer_size, ops, in_do)


def apply_text(f, op):
    name, n = op
    try:
        if name == "read":
            return f.read(n)
        if name == "readline":
            return f.readline()
        if name == "tell":
            return f.tell()
        if name == "seek_tell":
            return f.seek(f.tell())
        if name == "seek0":
            return f.seek(0)
        if name == "write":
            return f.write("w%d\n" % n)
    except (OSError, ValueError) as e:
        return type(e).__name__
    raise AssertionError(name)


@pytest.mark.parametrize("seed", SEEDS)
def test_text_file_same_results_in_and_out_of_do(tmp_path, seed):
    rng = random.Random(seed)
    lines = ["%s\u00e9\u20ac %d\n" % ("x" * rng.randrange(30), i)
             for i in range(60)]
    ops = [(rng.choice(["read", "readline", "readline", "tell",
                        "seek_tell", "seek0", "write"]),
            rng.choice([1, 5, 40]))
           for _ in range(120)]
    in_do = [rng.random() < 0.5 for _ in ops]
    results = []
    for flags in ([False] * len(ops), in_do):
        path = tmp_path / "t"
        path.write_text("".join(lines), encoding="utf-8")
        f = open(path, "r+", encoding="utf-8", buffering=64)
        out = []
        for op, protect in zip(ops, flags):
            call = secret.do if protect else (lambda fn, *a: fn(*a))
            out.append(call(apply_text, f, op))
        f.close()
        out.append(path.read_bytes())
        results.append(out)
    assert results[0] == results[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_text_pipe_same_results_in_and_out_of_do(seed):
    """A text reader without tell() (a pipe, as sys.stdin usually is) drops
    a secret chunk once it is read to its end: what it reads is the same."""
    rng = random.Random(seed)
    text = "".join("%s %d\n" % ("y" * rng.randrange(50), i)
                   for i in range(200))
    ops = [(rng.choice(["read", "readline", "readline"]),
            rng.choice([1, 7, 100])) for _ in range(150)]
    in_do = [rng.random() < 0.5 for _ in ops]
    results = []
    for flags in ([False] * len(ops), in_do):
        r, w = os.pipe()
        os.write(w, text.encode())
        os.close(w)
        f = os.fdopen(r, "r", encoding="utf-8")
        out = []
        for op, protect in zip(ops, flags):
            call = secret.do if protect else (lambda fn, *a: fn(*a))
            out.append(call(apply_text, f, op))
        out.append(f.read())
        f.close()
        results.append(out)
    assert results[0] == results[1]
    assert "".join(x for x in results[0] if isinstance(x, str)) == text


def test_buffer_moves_into_the_secret_heap_and_is_zeroed_at_close(tmp_path):
    """The first read in do() of a file object made before moves its buffer
    into the secret heap (a 4 MiB buffer, to stand out); close() frees it
    there, zeroed. Control: a read outside do() moves nothing."""
    path = tmp_path / "big"
    path.write_bytes(os.urandom(64))
    secret.do(int)                    # the heap is reserved
    size = 4 << 20
    control = open(path, "rb", buffering=size)
    before = secret.heap_info()
    control.read(8)
    assert secret.heap_info()["live_bytes"] - before["live_bytes"] < size
    control.close()

    f = open(path, "rb", buffering=size)
    before = secret.heap_info()
    head = secret.do(f.read, 8)
    moved = secret.heap_info()
    assert moved["live_bytes"] - before["live_bytes"] >= size
    assert f.read() == path.read_bytes()[8:] and len(head) == 8
    f.close()
    after = secret.heap_info()
    assert moved["live_bytes"] - after["live_bytes"] >= size
    assert after["zeroed_bytes"] - moved["zeroed_bytes"] >= size


def test_text_written_in_do_flushed_after_is_written():
    r, w = os.pipe()
    out = os.fdopen(w, "w", encoding="utf-8")
    token = os.urandom(8).hex()
    secret.do(out.write, "token=%s\n" % token)
    out.flush()                       # outside do: the secret copies path
    out.close()
    with os.fdopen(r, "rb") as f:
        assert f.read() == ("token=%s\n" % token).encode()


CHILD = textwrap.dedent("""\
    import os, sys
    import secret
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    os.write(w, b"x\\n")
    reader.peek(1)                    # the buffer exists, ordinary memory
    print(secret.do(reader.readline))
    print(secret.heap_info()["exhausted"])
""")


def test_exhausted_heap_fails_the_read_instead_of_leaving_data():
    """Moving the buffer into the secret heap is an allocation: when the
    heap is full the read raises MemoryError (spec §3.4: never silently
    ordinary memory)."""
    fill = textwrap.dedent("""\
        import os, secret
        r, w = os.pipe()
        reader = os.fdopen(r, "rb", buffering=8 * 1024 * 1024)
        os.write(w, b"x\\n")
        keep = []
        def fill():
            try:
                while True:
                    keep.append(bytearray(1 << 20))
            except MemoryError:
                pass
            try:
                reader.readline()
            except MemoryError as e:
                return "MemoryError: " + str(e)
            return "read"
        print(secret.do(fill))
    """)
    r = subprocess.run([sys.executable, "-c", fill], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, PYTHONSECRETHEAPSIZE="64M"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("MemoryError: secret heap exhausted"), \
        r.stdout
    # Control: with room in the heap the same read works.
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["b'x\\n'", "0"]
