"""Control shape for exc_closure_kept: same, but the token is a plain local."""
import logging, logging.handlers
NEEDS = ("heap", "exception_frames")
CONTROL_FORMS = ("raw",)

def setup(ctx):
    h = logging.handlers.BufferingHandler(100)
    lg = logging.getLogger("rx"); lg.addHandler(h); lg.propagate = False
    ctx.state["h"] = h

def check(x, token):
    if x != token:
        raise PermissionError("rejected")

def work(ctx):
    token = ctx.read_text()
    try:
        check("guess", token)
    except PermissionError:
        logging.getLogger("rx").exception("check failed")
        raise

def main(ctx):
    try:
        ctx.protect(work, ctx)
    except PermissionError:
        pass
