"""What the tls_* residue scenarios share: a throwaway certificate, a peer
process (tls_peer.py) that sends the secret when asked, a client context."""

import os
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def start_peer(ctx, version):
    """Start the peer; return (client context, port). The peer sends the
    secret file each time it receives a byte."""
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-days", "1"], check=True, capture_output=True)
    ctx.peer = subprocess.Popen(
        [sys.executable, "-I", os.path.join(HERE, "tls_peer.py"), cert, key,
         ctx.secret_path, version], stdout=subprocess.PIPE, text=True)
    port = int(ctx.peer.stdout.readline())
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return client, port


def receive(ctx, tls):
    """Ask the peer for the secret and read it whole (not what follows it
    in the record: the rest of a message read later); its length."""
    n = os.stat(ctx.secret_path).st_size
    tls.sendall(b"g")
    got = b""
    while len(got) < n:
        got += tls.recv(n - len(got))
    return len(got)
