"""A sampling profiler thread (made before do) keeps the frames it sampled
with sys._current_frames(); func chains an exception caught two calls below
it. Docs: a frame in no traceback kept alive by a dropped frame's f_back is
cleared, even if a profiler still holds it."""
import sys, threading, time
NEEDS = ("heap", "exception_frames")
CONTROL_FORMS = ("raw",)
KEPT = []
def setup(ctx):
    main_id = threading.get_ident()
    ev, stop = threading.Event(), threading.Event()
    def sampler():
        while not stop.is_set():
            if ev.wait(0.01):
                f = sys._current_frames().get(main_id)
                while f is not None:
                    KEPT.append(f); f = f.f_back
                ev.clear()
    t = threading.Thread(target=sampler, daemon=True); t.start()
    ctx.state.update(ev=ev, stop=stop, t=t)

def c(): raise ValueError("c failed")
def b():
    try: c()
    except ValueError as e: return e
def a(ctx, token):
    ev = ctx.state["ev"]; ev.set()
    while ev.is_set(): time.sleep(0.001)     # sampled now
    return b()
def work(ctx):
    token = ctx.read_text()
    e = a(ctx, token)
    raise RuntimeError("wrapped") from e

def main(ctx):
    try:
        ctx.protect(work, ctx)
    except RuntimeError:
        pass
def teardown(ctx):
    ctx.state["stop"].set(); ctx.state["t"].join()
