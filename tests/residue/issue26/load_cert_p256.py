"""SSLContext.load_cert_chain() with a P-256 private key (PKCS#8 PEM, its
scalar the secret); the context is dropped."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _keys  # noqa: E402

# The PEM text holds the scalar's base64 one byte past a group boundary.
FORMS = ("base64+1",)


def work(ctx):
    return _keys.load(ctx, "p256")
