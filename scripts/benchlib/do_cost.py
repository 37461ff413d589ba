"""pyperf benchmarks of secret.do()'s cost (spec §4; issue 5's numbers):
`scripts/bench.py do [OUT.json] [pyperf options]` runs this script in the
experiment's bench venv (cpython-build/venv/bench), as
`python scripts/benchlib/do_cost.py -o OUT.json [pyperf options]`.

Each pair is the same work with and without secret.do, in one run:
- noop: the fixed cost, in the main thread and in threads whose stacks are
  256 KiB, 8 MiB and 64 MiB (the cost must not follow the stack's size;
  each thread's first do(), which sets its stack up, is not timed);
- stack-N: func writes N KiB of C stack (the cost follows the depth used);
- hmac, aesgcm: one real key operation.

With --cpu-time a value is read from this process's CPU time
(time.process_time) instead of the wall clock: on a machine that other
work keeps busy, the wall clock counts the waits for a CPU too.
"""

import hmac
import os
import threading
import time

import pyperf

import secret

# The clock a value is read with: wall clock, or with --cpu-time this
# process's CPU time (a machine that other work keeps busy delays a run
# while it waits for a CPU; its CPU time changes little).
clock = time.perf_counter

try:
    import _testsecret
except ImportError:
    _testsecret = None


def noop():
    return None


def in_thread(stack_size, loops, func, *args):
    """Time `loops` calls of func(*args) in a new thread with the given
    stack size."""
    result = []

    def body():
        func(*args)     # a thread's first do() sets up its stack: not timed
        t0 = clock()
        for _ in range(loops):
            func(*args)
        result.append(clock() - t0)

    old = threading.stack_size(stack_size)
    try:
        t = threading.Thread(target=body)
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    return result[0]


def timed(func, *args):
    def time_func(loops):
        t0 = clock()
        for _ in range(loops):
            func(*args)
        return clock() - t0
    return time_func


def add_cmdline_args(cmd, args):
    if args.cpu_time:
        cmd.append("--cpu-time")


def main():
    global clock
    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args)
    runner.argparser.add_argument(
        "--cpu-time", action="store_true",
        help="read CPU time (time.process_time), not the wall clock")
    if runner.parse_args().cpu_time:
        clock = time.process_time
    runner.metadata["description"] = "secret.do() cost"

    runner.bench_time_func("noop", timed(noop))
    runner.bench_time_func("do(noop)", timed(secret.do, noop))
    for size, label in ((256 << 10, "256k"), (8 << 20, "8m"),
                        (64 << 20, "64m")):
        runner.bench_time_func(
            "noop thread-%s" % label,
            lambda loops, s=size: in_thread(s, loops, noop))
        runner.bench_time_func(
            "do(noop) thread-%s" % label,
            lambda loops, s=size: in_thread(s, loops, secret.do, noop))

    if _testsecret is not None:
        p = os.urandom(8).replace(b"\0", b"\1")
        for kib in (16, 64, 256):
            w = _testsecret.write_stack_pattern
            runner.bench_time_func("stack-%dk" % kib, timed(w, p, kib << 10))
            runner.bench_time_func("do(stack-%dk)" % kib,
                                   timed(secret.do, w, p, kib << 10))

    key, msg = os.urandom(32), os.urandom(64)
    runner.bench_time_func("hmac", timed(hmac.digest, key, msg, "sha256"))
    runner.bench_time_func("do(hmac)",
                           timed(secret.do, hmac.digest, key, msg, "sha256"))
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        return
    nonce = os.urandom(12)
    aes = AESGCM(key)
    ct = aes.encrypt(nonce, msg, None)
    runner.bench_time_func("aesgcm", timed(aes.decrypt, nonce, ct, None))
    runner.bench_time_func("do(aesgcm)",
                           timed(secret.do, aes.decrypt, nonce, ct, None))


if __name__ == "__main__":
    main()
