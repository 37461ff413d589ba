"""dict and set keys: the secret as a key and a member, looked up."""


def work(ctx):
    s = ctx.read_text()
    key = ctx.read_secret()
    tokens = {s: "app", "other": "x"}
    seen = {key, b"nothing"}
    for i in range(100):
        tokens["t%d" % i] = i                       # grows the table
    return (s in tokens) + (key in seen) + len(tokens)
