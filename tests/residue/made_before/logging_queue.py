"""A queue-based logging setup made before do() (QueueHandler, and a
QueueListener thread formatting to a stream): a record with the secret
is logged in do(); the listener handles it, then is stopped."""

import logging
import logging.handlers
import os
import queue

KEEP = []


def setup(ctx):
    q = queue.SimpleQueue()
    stream = open(os.devnull, "w")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    log = logging.getLogger("svc")
    log.propagate = False
    log.addHandler(logging.handlers.QueueHandler(q))
    log.setLevel(logging.INFO)
    KEEP.extend([listener, stream])


def work(ctx):
    logging.getLogger("svc").info("token=%s", ctx.read_text())
    return 1


def teardown(ctx):
    KEEP[0].stop()
