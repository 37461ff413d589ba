"""Lines read in do() from a file made before, the key among them, while
another thread (outside do) flushes the same file object over and over:
resets under the reader's feet, its readline waiting for the lock.
(Upstream's readline is not thread-safe against flush(): what it returns
is not checked here, only what it leaves.)"""

import os
import sys
import tempfile
import threading

NEEDS = ("heap", "io_buffers")
CONTROL_FORMS = ("raw",)


def setup(ctx):
    fd, ctx.path = tempfile.mkstemp()
    os.write(fd, b"".join(b"filler %05d\n" % i for i in range(3000)))
    os.write(fd, b"key=")
    src = os.open(ctx.secret_path, os.O_RDONLY)
    try:                          # kernel to kernel: not in this process
        os.copy_file_range(src, fd, os.fstat(src).st_size)
    finally:
        os.close(src)
    # Near the end, so that the last fill holds it (the control's copy).
    os.write(fd, b"\n" + b"".join(b"after %05d\n" % i for i in range(3)))
    os.close(fd)
    ctx.f = open(ctx.path, "rb", buffering=4096)
    ctx.stop = threading.Event()
    sys.setswitchinterval(1e-6)

    def flusher():
        while not ctx.stop.is_set():
            ctx.f.flush()         # raw seek back, the buffer reset
            ctx.f.tell()
    ctx.thread = threading.Thread(target=flusher, name="flusher")
    ctx.thread.start()


def work(ctx):
    return sum(len(line) for line in iter(ctx.f.readline, b""))


def teardown(ctx):
    ctx.stop.set()
    ctx.thread.join()
    sys.setswitchinterval(0.005)
    os.unlink(ctx.path)
