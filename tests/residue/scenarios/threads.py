"""Work in two threads: each reads and processes the secret, then ends."""

import threading

NEEDS = ("heap", "c_stack")


def worker(ctx, out, i):
    s = ctx.read_text()
    out[i] = len(("%d:%s" % (i, s)).encode())


def work(ctx):
    out = [0, 0]
    ts = [threading.Thread(target=worker, args=(ctx, out, i),
                           name="worker-%d" % i) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(out)
