"""An exception raised in do() inside a closure over the token, logged by a
buffering handler made before do (docs claim: frames held elsewhere are
cleared, their locals freed)."""
import logging, logging.handlers
NEEDS = ("heap", "exception_frames")
CONTROL_FORMS = ("raw",)

def setup(ctx):
    h = logging.handlers.BufferingHandler(100)
    lg = logging.getLogger("rx"); lg.addHandler(h); lg.propagate = False
    ctx.state["h"] = h

def work(ctx):
    token = ctx.read_text()
    def check(x):
        if x != token:
            raise PermissionError("rejected")
    try:
        check("guess")
    except PermissionError:
        logging.getLogger("rx").exception("check failed")
        raise

def main(ctx):
    try:
        ctx.protect(work, ctx)
    except PermissionError:
        pass
