"""An SSLContext made before do() loads its certificate chain in do()
(the private key's seed is the secret) and is kept, as a server keeps
its context: the key lives on in it."""

import os
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "issue26"))
import _keys  # noqa: E402

FORMS = ("base64+2",)
KEEP = []


def setup(ctx):
    KEEP.append(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def work(ctx):
    with tempfile.TemporaryDirectory() as d:
        cert, key = _keys.write_key(ctx, "ed25519", d)
        KEEP[0].load_cert_chain(cert, key)
    return 1
