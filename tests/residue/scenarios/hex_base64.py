"""Hex and base64: encode the key both ways and decode it back."""

import base64
import binascii

CONTROL_FORMS = ("hex", "base64")


def work(ctx):
    key = ctx.read_secret()
    h = key.hex()
    b = base64.b64encode(key)
    again = bytes.fromhex(h) + base64.b64decode(b) + binascii.unhexlify(h)
    return len(again) + len(b.decode()) + len(h.upper())
