"""hashlib.pbkdf2_hmac: derive a key (the derived key is searched too)."""

import hashlib

DERIVED = (("pbkdf2", "sha256", b"residue-salt", 1000),)
CONTROL_FORMS = ("pbkdf2",)


def work(ctx):
    password = ctx.read_secret()
    dk = hashlib.pbkdf2_hmac("sha256", password, b"residue-salt", 1000)
    return len(dk.hex())
