"""CPython's vendored HACL* SHA-256 (_sha2) hashing a salted key.

HACL*'s streaming state, the unprocessed input included, comes from the C
library's malloc, not from PyMem (issue 23). The 16-byte salt puts the key
past the words glibc's free overwrites in that buffer.
"""

import _sha2

NEEDS = ("heap", "native_heap")
CONTROL_FORMS = ("raw",)
CONTROL_WHERE = ("heap",)


def work(ctx):
    h = _sha2.sha256()
    h.update(b"salt:0123456789a")
    h.update(ctx.read_secret())
    h2 = h.copy()
    h2.update(b"more")
    return h.hexdigest() != h2.hexdigest()
