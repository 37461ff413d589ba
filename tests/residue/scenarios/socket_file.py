"""A line read in do() through a socket's makefile() made before."""

import socket

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    ctx.peer, sock = socket.socketpair()
    ctx.sock = sock
    ctx.reader = sock.makefile("rb")


def work(ctx):
    ctx.peer.sendall(ctx.read_secret() + b"\r\n")
    return len(ctx.reader.readline())
