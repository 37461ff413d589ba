"""gevent: a StreamServer on loopback (monkey-patched sockets) whose
handler runs through secret.do: it reads a key from a file, then waits
on its socket and in gevent.sleep inside do (its greenlet parks in the
hub), verifies an HMAC-SHA256 token and answers; a second greenlet runs
meanwhile."""

import hmac
import os

# Needs the gevent package (PyPI) in the interpreter that runs it: where
# it is missing the scenario is reported n/a, not run.
REQUIRES = ("gevent",)
DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("raw", "hmac")
CONTROL_WHERE = ("stack:main",)
NEEDS = ("heap", "c_stack")

MSG = b"GET /v1/orders"
REQUESTS = 3
DEPTH = 200


def recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("short read")
        buf += chunk
    return buf


def down(n, f):
    # Each level goes through C (map calls the lambda): the digest
    # _hashlib writes into a local buffer at the bottom lies on the C
    # stack below where the greenlet parks next.
    if n == 0:
        return f()
    return list(map(lambda _: down(n - 1, f), (0,)))[0]


def handle(ctx, sock, ticks):
    import gevent
    key = ctx.read_secret()
    # A key store's buffer: the key far from the start of a block large
    # enough for malloc (free-list links written over a freed block's
    # start must not be what hides it).
    store = bytes(600) + key + bytes(600)
    n = int.from_bytes(recv_exactly(sock, 2), "big")
    msg = recv_exactly(sock, n)
    tag = down(DEPTH, lambda: hmac.digest(key, msg, "sha256"))
    # The client sends the token only later: this read parks the greenlet
    # in the hub with the key live, and the second greenlet runs.
    token = recv_exactly(sock, 32)
    gevent.sleep(0.001)
    ok = hmac.compare_digest(tag, token) and len(store) > 0
    sock.sendall(b"ok" if ok else b"no")
    sock.sendall(ticks[-1].to_bytes(8, "big"))
    return ok


def main(ctx):
    import gevent
    import socket
    from gevent.server import StreamServer

    ticks = [0]

    def ticker():
        # The second greenlet: allocates and sleeps until killed.
        while True:
            ticks.append(sum(os.urandom(16)))
            del ticks[:-4]
            gevent.sleep(0.0005)

    def on_client(sock, addr):
        ctx.protect(handle, ctx, sock, ticks)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), on_client)
    server.start()
    port = server.server_port
    side = gevent.spawn(ticker)
    answers = []
    for i in range(REQUESTS):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(len(MSG).to_bytes(2, "big") + MSG)
        gevent.sleep(0.005)
        c.sendall(os.urandom(32))
        answers.append(recv_exactly(c, 10))
        c.close()
    server.stop()
    side.kill()
    gevent.sleep(0)
    ctx.state["answers"] = len(answers)


def setup(ctx):
    # Plain sockets, sleeps and threads become cooperative, as in a
    # gevent service; done before the work, outside any protection.
    from gevent import monkey
    monkey.patch_all()
