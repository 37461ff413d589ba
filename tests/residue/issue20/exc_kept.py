"""An exception raised in do() and kept by the caller (as an error
reporter keeps it): its message holds no secret, its frames' locals do."""

NEEDS = ("heap", "exception_frames")
CONTROL_FORMS = ("raw",)

REPORTED = []                   # an error reporter's buffer


def check(token):
    raw = token.encode()
    if raw.startswith(b"\0"):
        return True
    raise PermissionError("token rejected")


def work(ctx):
    token = ctx.read_text()
    return check(token)


def main(ctx):
    try:
        ctx.protect(work, ctx)
    except PermissionError as e:
        REPORTED.append(e)
