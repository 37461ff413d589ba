"""hmac: sign a message with the key (the tag is searched too)."""

import hmac

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("hmac",)


def work(ctx):
    key = ctx.read_secret()
    tag = hmac.new(key, b"GET /v1/orders", "sha256").digest()
    hexed = hmac.new(key, b"GET /v1/orders", "sha256").hexdigest()
    return hmac.compare_digest(tag.hex(), hexed)
