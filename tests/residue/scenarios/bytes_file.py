"""Bytes from a file: read a key file, strip, slice and join it."""


def work(ctx):
    with open(ctx.secret_path, "rb") as f:
        key = f.read().strip()
    framed = b"key:" + key + b"\n"
    body = framed[4:-1]
    return len(body) + len(bytes(reversed(key)))
