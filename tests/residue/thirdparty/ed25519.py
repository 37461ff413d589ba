"""cryptography: an Ed25519 signing key from the secret's 32 bytes signs."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey)

CONTROL_FORMS = ("raw",)


def work(ctx):
    k = Ed25519PrivateKey.from_private_bytes(ctx.read_secret())
    return len(k.sign(b"GET /v1/orders"))
