"""cryptography: HKDF-SHA256 derives a key from the secret."""

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CONTROL_FORMS = ("raw",)


def work(ctx):
    kdf = HKDF(hashes.SHA256(), 32, b"salt", b"orders v1")
    return len(kdf.derive(ctx.read_secret()))
