#!/usr/bin/env python3
"""Thread storms in the default secret heap (issue 21): 256 threads inside
secret.do() at once, then 10,000 short-lived threads each calling do()
once. Prints what the heap committed (its size is a budget on committed
memory), the failures (none expected) and the time:

  cpython-build/install/experiment/bin/python3 scripts/heap_thread_storm.py

About 10 s on 2 cores. Options go to the interpreter as usual
(-X secret_heap_size=...).
"""

import json
import os
import threading
import time

import secret


def at_once(n, per_thread):
    barrier = threading.Barrier(n)
    ok = []

    def inside():
        kept = [os.urandom(64) for _ in range(per_thread)]
        barrier.wait()              # every thread is inside do() now
        return len(kept)

    def body():
        ok.append(secret.do(inside))

    threads = [threading.Thread(target=body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(ok)


def short_lived(n):
    ok = []
    for _ in range(n):
        t = threading.Thread(
            target=lambda: ok.append(secret.do(os.urandom, 100)))
        t.start()
        t.join()
    return len(ok)


def main():
    secret.do(int)
    info0 = secret.heap_info()
    t0 = time.monotonic()
    concurrent = at_once(256, 100)
    t1 = time.monotonic()
    peak = secret.heap_info()["peak_committed"]
    sequential = short_lived(10000)
    t2 = time.monotonic()
    info = secret.heap_info()
    print(json.dumps(dict(
        size=info["size"], concurrent_ok=concurrent,
        concurrent_seconds=round(t1 - t0, 2),
        peak_committed_concurrent=peak,
        short_lived_ok=sequential, short_lived_seconds=round(t2 - t1, 2),
        committed_after=info["committed"], committed_before=info0["committed"],
        live_bytes_after=info["live_bytes"],
        live_bytes_before=info0["live_bytes"],
        exhausted=info["exhausted"]), indent=1))
    return 0 if concurrent == 256 and sequential == 10000 \
        and not info["exhausted"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
