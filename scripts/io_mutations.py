#!/usr/bin/env python3
"""Mutation check of the file-object hooks (patches 0014 and 0027): each
mutation removes or weakens one hook in the experiment's build tree
(cpython-build/work/experiment/src), rebuilds its ./python (make python,
not installed), and runs tests/test_io_attack.py and test_io_buffers.py
with it; every mutation must make a test fail ("caught"). The sources are
restored and ./python rebuilt at the end (the installed experiment is
never touched).

    python3 scripts/io_mutations.py [NAME ...]     # all, or those named

On demand, not in CI: about 10 minutes on 2 cores (16 mutations). Run
2026-12-03 on the branch of issue 22's patch 0014 redo: 16 of 16 caught.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = ROOT + "/cpython-build/work/experiment/src"
BUILD = ROOT + "/cpython-build/work/experiment/build"
PY = BUILD + "/python"
SITE = ROOT + "/cpython-build/venv/experiment/lib/python3.13/site-packages"
MUT = [
 ("readline end zeroing", "Modules/_io/bufferedio.c",
  "end_unlocked:\n    /* runtimesecret: zero what this read consumed of a secret buffer */\n    SECRET_CONSUMED(self);",
  "end_unlocked:"),
 ("read fast-path zeroing", "Modules/_io/bufferedio.c",
  "        if (res != Py_None) {\n            /* runtimesecret: zero what this read consumed of a secret buffer */\n            SECRET_CONSUMED(self);",
  "        if (res != Py_None) {"),
 ("read1 fast-path zeroing", "Modules/_io/bufferedio.c",
  "        assert(res != Py_None);\n        /* runtimesecret: zero what this read consumed of a secret buffer */\n        SECRET_CONSUMED(self);",
  "        assert(res != Py_None);"),
 ("adopt restarts offset", "Include/internal/pycore_secret.h",
  "    *buffer = buf;\n    *zeroed = 0;", "    *buffer = buf;"),
 ("read locked zeroing", "Modules/_io/bufferedio.c",
  "    /* runtimesecret: zero what this read consumed of a secret buffer */\n    SECRET_CONSUMED(self);\n    LEAVE_BUFFERED(self)\n    return res;",
  "    LEAVE_BUFFERED(self)\n    return res;"),
 ("readinto end zeroing", "Modules/_io/bufferedio.c",
  "end:\n    /* runtimesecret: zero what this read consumed of a secret buffer */\n    SECRET_CONSUMED(self);\n    LEAVE_BUFFERED(self);",
  "end:\n    LEAVE_BUFFERED(self);"),
 ("chunk read", "Modules/_io/textio.c",
  "    /* runtimesecret: a secret chunk read to its end is freed now */\n    _PySecretIO_ChunkRead(&self->decoded_chars, &self->decoded_chars_used,\n                          self->telling);", ""),
 ("readinto fast zeroing", "Modules/_io/bufferedio.c",
  "            self->pos += buffer->len;\n            /* runtimesecret: zero what this read consumed of a secret buffer */\n            SECRET_CONSUMED(self);",
  "            self->pos += buffer->len;"),
 ("seek skip zeroing", "Modules/_io/bufferedio.c",
  "                /* runtimesecret: zero the bytes a seek forward skipped */\n                SECRET_CONSUMED(self);", ""),
 ("seek back rule", "Modules/_io/bufferedio.c",
  "                && _PySecretIO_SeekBackOK(self->buffer, offset))", "                && 1)"),
 ("discard", "Modules/_io/bufferedio.c",
  "    /* runtimesecret: zero the read data a secret buffer discards */\n    SECRET_DISCARD(self);", ""),
 ("flushed", "Modules/_io/bufferedio.c",
  "    /* runtimesecret: zero the written bytes a secret buffer flushed */\n    SECRET_FLUSHED(self);", ""),
 ("shift", "Modules/_io/bufferedio.c",
  "        _PySecretIO_Zero(self->buffer, self->write_end - self->write_pos,\n                         self->write_end);", ""),
 ("adopt in write", "Modules/_io/bufferedio.c",
  "    CHECK_INITIALIZED(self)\n    /* runtimesecret: in secret mode, first move the buffer to the secret heap */\n    if (SECRET_ADOPT(self) < 0) {\n        return NULL;\n    }\n\n    if (!ENTER_BUFFERED(self))\n        return NULL;\n\n    /* Issue #31976",
  "    CHECK_INITIALIZED(self)\n\n    if (!ENTER_BUFFERED(self))\n        return NULL;\n\n    /* Issue #31976"),
 ("text flag", "Modules/_io/textio.c",
  "    if (_PySecret_IsSecret(b)) {\n        self->secret_pending = 1;\n    }", ""),
 ("text flag restore", "Modules/_io/textio.c",
  "        self->secret_pending |= (r < 0 && self->pending_bytes != NULL);", ""),
]
names = sys.argv[1:]
results = []
for name, path, old, new in MUT:
    if names and name not in names:
        continue
    p = os.path.join(SRC, path)
    orig = open(p).read()
    assert orig.count(old) == 1, name
    open(p, "w").write(orig.replace(old, new))
    try:
        r = subprocess.run(["make", "-j2", "python"], cwd=BUILD,
                           capture_output=True, text=True)
        if r.returncode:
            results.append((name, "BUILD FAILED " + r.stderr[-500:]))
            continue
        t = subprocess.run([PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                            "test_io_attack.py", "test_io_buffers.py"],
                           cwd=ROOT + "/tests", capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=SITE, MALLOC_PERTURB_="0"))
        last = [l for l in t.stdout.splitlines() if l.strip()][-3:]
        results.append((name, "caught" if t.returncode else "NOT CAUGHT", last))
    finally:
        open(p, "w").write(orig)
        os.utime(p)
for r in results:
    print(*r[:2])
subprocess.run(["make", "-j2", "python"], cwd=BUILD, capture_output=True)
