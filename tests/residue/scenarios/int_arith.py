"""int arithmetic on a key: from_bytes, pow, to_bytes (30-bit digits)."""

FORMS = ("int",)
CONTROL_FORMS = ("int",)


def work(ctx):
    key = ctx.read_secret()
    k = int.from_bytes(key, "big")
    m = (1 << 521) - 1
    c = pow(k, 65537, m)
    back = k.to_bytes(len(key), "big")
    return (c ^ (k * 3 + 1)).bit_length() + len(back)
