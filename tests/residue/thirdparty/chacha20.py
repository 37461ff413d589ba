"""cryptography: ChaCha20-Poly1305 with the key (OpenSSL's native code
leaves it on the C stack)."""

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

CONTROL_WHERE = ("stack:main",)


def work(ctx):
    c = ChaCha20Poly1305(ctx.read_secret())
    ct = c.encrypt(b"\0" * 12, b"attack at dawn", None)
    return len(c.decrypt(b"\0" * 12, ct, None))
