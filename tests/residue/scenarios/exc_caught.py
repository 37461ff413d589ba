"""An exception carrying the secret, raised and caught inside the work."""


def check(s):
    raise ValueError("invalid token %r for user app" % s)


def work(ctx):
    s = ctx.read_text()
    try:
        check(s)
    except ValueError as e:
        msg = str(e)
    return len(msg)
