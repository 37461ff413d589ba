"""Work inside secret.do() vs the same work outside (spec §4: at most 1.5x),
with pyperf, both in one run:

  scripts/bench.py inside [OUT.json] [pyperf options, e.g. --fast]

(which runs this script in the experiment's bench venv).

json.loads of a 50 KB document, a dict of 10 000 str, and a bytearray grown
to 1 MiB by appends of 64 B to 64 KiB. Prints the ratio of means and of
minima for each pair. Informative: never asserted in tests.

For each work it also times the zeroing alone: explicit_bzero, in one call,
over as many bytes as the secret heap zeroes in one do() of that work
(heap_info()'s zeroed_bytes), in a buffer that is already in memory, as a
freed block is. The last column, (in do - that zeroing) / outside, is what
do costs beyond the zeroing that zero-on-free cannot avoid. One call is
the fastest way to zero those bytes (do zeroes block by block), so the
column errs on the side of showing do slower.
"""

import ctypes

import pyperf

import secret
from do_cost import timed       # same directory
from works import DOC, d, grow, j


_bzero = ctypes.CDLL(None).explicit_bzero
_bzero.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_bzero.restype = None


def zeroed_by(fn):
    """Bytes the secret heap zeroes in one do(fn), after a first call."""
    secret.do(fn)
    z0 = secret.heap_info()["zeroed_bytes"]
    secret.do(fn)
    return secret.heap_info()["zeroed_bytes"] - z0


def zeroing(nbytes):
    buf = ctypes.create_string_buffer(max(nbytes, 1))   # written: resident
    addr = ctypes.addressof(buf)

    def z(buf=buf):                                     # keeps buf alive
        _bzero(addr, nbytes)
    return z


def main():
    runner = pyperf.Runner()
    runner.metadata["description"] = "work in secret.do() vs outside"
    cases = [("json.loads 50KB", j), ("dict 10k str", d)]
    cases += [("bytearray 1MiB/%dB" % step, grow(step))
              for step in (64, 256, 1024, 4096, 65536)]
    if not secret.supported():
        raise SystemExit("bench.py inside: secret.do() does not erase here")
    rows = []
    for name, fn in cases:
        nbytes = zeroed_by(fn)
        out = runner.bench_time_func(name, timed(fn))
        ins = runner.bench_time_func("do(%s)" % name, timed(secret.do, fn))
        zero = runner.bench_time_func("zero(%s)" % name,
                                      timed(zeroing(nbytes)))
        if None not in (out, ins, zero):     # the manager process
            rows.append((name, nbytes, out, ins, zero))
    if rows:
        print()
        print("document: %d bytes" % len(DOC))
        print("| work | outside (mean) | in do (mean) | ratio (mean) "
              "| ratio (min) | zeroed by do | zeroing alone (min) "
              "| (in do - zeroing) / outside (min) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, nbytes, out, ins, zero in rows:
            o, i, z = (min(b.get_values()) for b in (out, ins, zero))
            print("| %s | %.1f us | %.1f us | %.2f | %.2f | %d B | %.1f us "
                  "| %.2f |" % (
                      name, out.mean() * 1e6, ins.mean() * 1e6,
                      ins.mean() / out.mean(), i / o, nbytes, z * 1e6,
                      (i - z) / o))


if __name__ == "__main__":
    main()
