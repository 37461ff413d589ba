# Allocation-heavy loop: objects of many kinds made and freed (free lists,
# pymalloc, raw blocks > 512 B, realloc of growing containers).
# With the argument "do", the whole loop runs inside secret.do() (the
# secret heap's own paths: what work inside do pays).
import sys


def work(n):
    total = 0.0
    for i in range(n):
        t = (i, i + 1, i + 2)
        lst = [i, t, str(i)]
        d = {"a": i, "b": lst}
        f = float(i) * 1.5 + 0.25
        b = bytes(600)
        s = "x%d" % i
        ba = bytearray(b"abc")
        ba += b"defghijk" * 8
        total += f + len(s) + len(d) + len(b) + len(ba)
    return total


if sys.argv[1:] == ["do"]:
    import secret
    if not secret.supported():
        sys.exit("secret.do() would not erase here: nothing to measure")
    secret.do(work, 200000)
else:
    work(200000)
