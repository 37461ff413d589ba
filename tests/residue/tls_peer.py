"""The TLS peer of the tls_* residue scenarios, in its own process (its
memory is not scanned): serves one connection on 127.0.0.1, and on each
byte it receives sends the secret file, read then, and 1,000 more bytes
in the same record (the rest of a message, not read yet).

    python3 tls_peer.py CERT KEY SECRET_FILE TLS_VERSION

Prints its port, then serves.
"""

import socket
import ssl
import sys

cert, key, path, version = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
with ctx.wrap_socket(conn, server_side=True) as tls:
    while tls.recv(1):
        with open(path, "rb") as f:
            tls.sendall(f.read() + b"." * 1000)
