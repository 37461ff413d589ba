"""float() of a secret number: dtoa keeps its digits in Bigint pools."""

# The first 12 bytes of the secret as a 96-bit number, parsed from its
# decimal text: _Py_dg_strtod builds it as a Bigint (28-29 digits, too
# many for the fast path), and Bfree() pools Bigints for reuse.
DERIVED = (("dtoa", 12),)
CONTROL_FORMS = ("dtoa",)


def work(ctx):
    key = ctx.read_secret()
    text = str(int.from_bytes(key[:12], "big"))
    return float(text) > 0.0
