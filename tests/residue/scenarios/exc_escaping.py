"""An exception carrying the secret escapes the work, caught outside."""


def work(ctx):
    s = ctx.read_text()
    raise PermissionError("token %s rejected" % s)


def main(ctx):
    try:
        ctx.protect(work, ctx)
    except PermissionError as e:
        assert "rejected" in str(e)
