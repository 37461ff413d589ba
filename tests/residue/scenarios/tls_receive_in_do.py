"""A secret received over TLS 1.2 (loopback, a peer process) on a
connection made in do() and still open after it (issue 26): the
connection is kept in a module global (it holds no copy of the secret
of its own making; the Python objects that did are dropped)."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import tlslib  # noqa: E402

# Pristine's control finds OpenSSL's read buffer in [heap] and the freed
# Python object; the experiment's control only the latter (every
# connection cleanses, in do() or not): any copy proves the run.
OPEN = []


def setup(ctx):
    ctx.client, ctx.port = tlslib.start_peer(ctx, "TLSv1_2")


def work(ctx):
    tls = ctx.client.wrap_socket(socket.create_connection(
        ("127.0.0.1", ctx.port)), server_hostname="localhost")
    OPEN.append(tls)
    return tlslib.receive(ctx, tls)
