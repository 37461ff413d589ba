"""SSLContext.load_cert_chain() with an Ed25519 private key (PKCS#8 PEM,
its seed the secret); the context is dropped."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _keys  # noqa: E402

# The PEM text holds the seed's base64 two bytes past a group boundary.
FORMS = ("base64+2",)


def work(ctx):
    return _keys.load(ctx, "ed25519")
