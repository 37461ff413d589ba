"""Run code that handles secrets, and erase what it leaves in memory.

This package is part of the runtimesecret experiment, the counterpart of Go's
runtime/secret package (GOEXPERIMENT=runtimesecret). It exists only in an
interpreter built with ``./configure --with-experiment=runtimesecret``.

    import secret

    def decrypt(path, blob):
        with open(path, "rb") as f:
            key = f.read()
        return aes_gcm_decrypt(key, blob)

    plaintext = secret.do(decrypt, "/run/keys/k1", blob)

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
"""

try:
    from _secret import do, enabled, supported, protections, heap_info
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

__all__ = ["do", "enabled", "supported", "protections", "heap_info",
           "survivors", "Survivor"]


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
