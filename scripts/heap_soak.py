#!/usr/bin/env python3
"""Soak the secret heap: N threads run secret.do() in a loop for SECONDS,
handing objects they made to each other through a queue (cross-thread
frees), then check that live secret bytes/blocks return to the baseline.

    python heap_soak.py [SECONDS=60] [THREADS=8]

tests/test_heap_robust.py runs it for a few seconds; run it for a minute
(the issue's soak) by hand: exits 0 and prints the heap counters.
"""

import gc
import os
import queue
import sys
import threading
import time

import secret


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    nthreads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    q = queue.Queue(maxsize=1000)
    errors = []
    stop = time.monotonic() + seconds

    def work(i):
        try:
            rounds = 0
            while time.monotonic() < stop:
                def f():
                    key = os.urandom(32)
                    d = {key.hex(): [key, bytearray(key) * 50, str(key)]}
                    d["self"] = d                        # a cycle
                    big = bytes(key) * (1 + rounds % 3000)
                    out = [key + b"!", big[:100], {"k": key.hex()}]
                    if rounds % 50 == 0:
                        # grown past 64 KiB: a block with headroom
                        g = bytearray()
                        for _ in range(48):
                            g += key * 64
                        out.append(g)
                    return out
                for obj in secret.do(f):
                    try:
                        q.put_nowait(obj)                # freed elsewhere
                    except queue.Full:
                        pass
                for _ in range(3):
                    try:
                        q.get_nowait()                   # frees another's
                    except queue.Empty:
                        break
                rounds += 1
        except BaseException as e:   # reported below
            errors.append(e)

    # warm-up: lazily made runtime objects may be born in secret mode
    secret.do(lambda: [os.urandom(8).hex() for _ in range(10)])
    gc.collect()
    base = secret.heap_info()
    threads = [threading.Thread(target=work, args=(i,))
               for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while not q.empty():
        q.get_nowait()
    gc.collect()
    info = secret.heap_info()
    grew = info["live_blocks"] - base["live_blocks"]
    print("allocations=%d frees=%d live_blocks=%d (baseline %d) "
          "live_bytes=%d (baseline %d) exhausted=%d committed=%d"
          % (info["allocations"], info["frees"], info["live_blocks"],
             base["live_blocks"], info["live_bytes"], base["live_bytes"],
             info["exhausted"], info["committed"]))
    print("headroom_blocks=%d" % info["headroom_blocks"])
    if errors:
        print("errors:", errors[:3])
        return 1
    # lazily made runtime objects (identifiers, caches) may stay: allow a
    # small, bounded growth, never one per round
    if grew > 200 or info["exhausted"] or info["headroom_blocks"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
