"""cryptography: AES-256-GCM encrypt and decrypt with the key."""

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CONTROL_FORMS = ("raw",)


def work(ctx):
    aes = AESGCM(ctx.read_secret())
    ct = aes.encrypt(b"\0" * 12, b"attack at dawn", None)
    return len(aes.decrypt(b"\0" * 12, ct, None))
