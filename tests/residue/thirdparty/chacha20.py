"""cryptography: ChaCha20-Poly1305 with the key (on some CPUs OpenSSL's
native code leaves it on the C stack)."""

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

# No CONTROL_WHERE: the stack copies depend on the code path OpenSSL picks
# for the CPU (2 on the main stack where it was first measured, none on an
# AMD EPYC with AVX-512), so the control is only asked to find the key.


def work(ctx):
    c = ChaCha20Poly1305(ctx.read_secret())
    ct = c.encrypt(b"\0" * 12, b"attack at dawn", None)
    return len(c.decrypt(b"\0" * 12, ct, None))
