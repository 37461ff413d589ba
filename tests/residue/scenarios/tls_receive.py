"""A secret received in do() over TLS 1.3 (loopback, a peer process) on a
connection made before: OpenSSL decrypts the record in its read buffer,
ordinary memory allocated with the connection (issue 26)."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import tlslib  # noqa: E402

# Pristine's control finds OpenSSL's read buffer in [heap] and the freed
# Python object; the experiment's control only the latter (every
# connection cleanses, in do() or not): any copy proves the run.


def setup(ctx):
    client, port = tlslib.start_peer(ctx, "TLSv1_3")
    ctx.tls = client.wrap_socket(socket.create_connection(
        ("127.0.0.1", port)), server_hostname="localhost")


def work(ctx):
    return tlslib.receive(ctx, ctx.tls)

