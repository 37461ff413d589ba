"""Run code that handles secrets, and erase what it leaves in memory.

This package is part of the runtimesecret experiment, the counterpart of Go's
runtime/secret package (GOEXPERIMENT=runtimesecret). It exists only in an
interpreter built with ``./configure --with-experiment=runtimesecret``.

    import hashlib, hmac, secret

    def verify(key_path, body, signature):
        with open(key_path, "rb") as f:      # the key is read inside do()
            key = f.read()
        mac = hmac.new(key, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, signature)   # only a bool comes out

    ok = secret.do(verify, "/run/keys/webhook.key", body, signature)

The key enters the process inside ``do``, is used there, and only results
that are not secret come out: what ``func`` returns is the caller's
ordinary memory.

``secret.do(func, /, *args, **kwargs)`` calls ``func(*args, **kwargs)`` with
the calling thread in secret mode and returns its result (or raises what it
raised). When it returns, the memory ``func`` used is erased as far as this
build provides: ``secret.protections()`` says which parts, ``supported()``
whether this platform erases at all (Linux x86-64 and aarch64; elsewhere
``do`` just calls ``func``), ``enabled()`` whether the calling thread is in
secret mode now. Threads started in secret mode stay in it for life.
In secret mode the caches of ``functools.lru_cache``, ``re`` and
``urllib.parse`` are read but not filled (a hit neither reorders nor
counts), so memoization does not memoize there (memoize with a dict made
inside ``func``). Code defined before ``do`` keeps adapting to what runs
in it (its counters and specialized forms say which instructions ran)
unless the interpreter runs with ``-X secret_freeze_code``.

An exception that leaves ``do`` carries nothing of ``func``: its traceback,
and those of the exceptions chained to it, lose the frames of the code that
ran inside ``do``, which are cleared (their locals freed and zeroed); a
note on the exception says where it was raised (file, line, function, no
values). The exception object and its arguments are the caller's: one that
embeds input (``KeyError(token)``, ``int()``'s message,
``JSONDecodeError.doc``) carries it out. Catch such errors inside ``func``
and raise a sanitized one after the ``except`` block::

    def load(path):
        token = read_token(path)
        try:
            claims = json.loads(token)
        except ValueError:
            claims = None
        if claims is None:      # outside the except block: no __context__
            raise BadToken(path + ": not a JSON token")
        return check(claims)

``survivors(keep=())`` lists the secret objects still alive outside
``do``: what code in secret mode made and something still holds (a
global, a cache, a closure, a thread-local), each with its type, size,
what holds it and, when tracemalloc traced it, where it was allocated.
Pass what ``do`` returned, and anything else kept on purpose, as
``keep``::

    token = secret.do(login, path)
    for s in secret.survivors(keep=[token]):
        print("\n".join(s.format()))

Coroutines, generators and async generators run later than the call that
makes them, so ``do`` refuses them (``TypeError``); three calls protect
them a step at a time, each step (from a resume to the next suspension)
running in secret mode and erased at the suspension, before any other code
of the thread runs::

    async def handler(reader, writer):
        return await secret.do_async(serve, reader, writer)

    for block in secret.iterate(decrypt_blocks, key_path, stream):
        ...

    async for record in secret.aiterate(fetch_and_decrypt, url):
        ...

Coroutines, generators and tasks made during a step (``asyncio.create_task``,
``TaskGroup``, ``gather``) are protected the same way wherever they are
resumed. When the body finishes (return, exception, cancellation), what
``do`` guarantees at its exit holds. Between steps the thread is not in
secret mode: other tasks of the event loop never run in it.

Under greenlet (and gevent) only the greenlet that called ``do`` is in
secret mode: a switch away leaves it, erasing what that greenlet left
below on the C stack as ``do``'s exit does, and a switch back re-enters
it; a greenlet made inside ``do`` runs in secret mode (make gevent's hub
before the first ``do``: ``gevent.get_hub()``). A gevent handler can wait
on sockets inside ``do``::

    def on_client(sock, addr):
        secret.do(handle, sock)     # handle reads the key, recv()s, signs
"""

import types as _types

try:
    from _secret import (do, do_async, enabled, supported, protections,
                         heap_info, _do_make)
except ImportError:
    raise ImportError(
        "the 'secret' module needs an interpreter built with the "
        "runtimesecret experiment (./configure "
        "--with-experiment=runtimesecret); this interpreter was built "
        "without it",
        name=__name__,
    ) from None



def __getattr__(name):
    # survivors() is a diagnostic: its module is imported on first use, so
    # that `import secret` costs what it did.
    if name in ("survivors", "Survivor"):
        from secret import _survivors
        return getattr(_survivors, name)
    raise AttributeError("module 'secret' has no attribute %r" % name)


__all__ = ["do", "do_async", "iterate", "aiterate", "enabled", "supported",
           "protections", "heap_info", "survivors", "Survivor"]


def iterate(func, /, *args, **kwargs):
    """Iterate over the generator func(*args, **kwargs) makes, each step
    in secret mode.

    func is called in secret mode and must return a generator; every
    next(), send(), throw() and close() of the returned iterator runs one
    step of it inside do() (its exit work included: the exception that
    leaves a step carries no frame of the generator). The generator object
    is secret: resumed by other means it still runs each step in secret
    mode.
    """
    gen = _do_make(func, *args, **kwargs)
    if not isinstance(gen, _types.GeneratorType):
        _close(gen)
        raise TypeError("secret.iterate() needs a generator function: %r "
                        "returned %s" % (func, type(gen).__name__))
    return _Steps(gen)


class _Steps:
    """What secret.iterate() returns: a generator's steps, each in do()."""

    __slots__ = ("_gen",)

    def __init__(self, gen):
        self._gen = gen

    def __iter__(self):
        return self

    def __next__(self):
        return _do_make(self._gen.__next__)

    def send(self, value):
        return _do_make(self._gen.send, value)

    def throw(self, *args):
        return _do_make(self._gen.throw, *args)

    def close(self):
        return _do_make(self._gen.close)


def aiterate(func, /, *args, **kwargs):
    """Iterate asynchronously (async for) over the async generator
    func(*args, **kwargs) makes, each step in secret mode.

    func is called in secret mode and must return an async generator;
    each __anext__(), asend(), athrow() and aclose() of the returned
    iterator is awaited through do_async(). The async generator object is
    secret: resumed by other means it still runs each step in secret mode.
    """
    agen = _do_make(func, *args, **kwargs)
    if not isinstance(agen, _types.AsyncGeneratorType):
        _close(agen)
        raise TypeError("secret.aiterate() needs an async generator "
                        "function: %r returned %s"
                        % (func, type(agen).__name__))
    return _AsyncSteps(agen)


class _AsyncSteps:
    """What secret.aiterate() returns: an async generator's steps, each
    awaited through do_async()."""

    __slots__ = ("_agen",)

    def __init__(self, agen):
        self._agen = agen

    def __aiter__(self):
        return self

    def __anext__(self):
        return do_async(self._agen.__anext__)

    def asend(self, value):
        return do_async(self._agen.asend, value)

    def athrow(self, *args):
        return do_async(self._agen.athrow, *args)

    def aclose(self):
        return do_async(self._agen.aclose)


def _close(obj):
    # What func made is closed in secret mode (its finally blocks run
    # protected), as do() closes what it refuses.
    close = getattr(obj, "close", None)
    if isinstance(obj, (_types.CoroutineType, _types.GeneratorType)):
        _do_make(close)
    elif isinstance(obj, _types.AsyncGeneratorType):
        try:
            _do_make(obj.aclose().send, None)
        except StopIteration:
            pass


def _after_fork_in_child():
    # Only the forking thread exists in the child. What other threads were
    # doing inside do() at the fork is zeroed on their stacks, but the
    # objects their func made stay in this process, unreachable (docs/
    # heap.md, "fork()"): say so rather than keep quiet.
    from _secret import _fork_lost
    n = _fork_lost()
    if n:
        import warnings
        warnings.warn(
            "secret: %d other thread(s) were inside secret.do() when this "
            "process forked; their stacks were zeroed in the child, but the "
            "objects their work had made stay in the child's memory (fork "
            "from a thread when no other is in do(), or use the 'spawn' or "
            "'forkserver' start method)" % n, RuntimeWarning, stacklevel=2)


def _register_fork_handler():
    import os
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


_register_fork_handler()
