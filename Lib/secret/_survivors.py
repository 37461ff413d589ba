"""secret.survivors(): the secret objects still alive, and what holds them.

Every object made in secret mode is a block of the secret heap, so "is it
secret" is a test on its address. _secret._referrers() finds, in one pass
over the objects the collector tracks and the locals of every thread's
frames, the secret objects and who refers to each; the same pass, given a
set of addresses, climbs one step up from the referrers, until a module,
a class, a frame's local or a thread's state is reached. Nothing here
prints or returns a secret's value: descriptions use the names of
modules, attributes, locals and keys that are not secret themselves.
"""

import gc
import sys

import _secret

__all__ = ["Survivor", "survivors"]

# _secret._referrers() kinds
_OBJECT, _LOCAL, _THREAD, _NONE = range(4)


class Survivor:
    """A secret object alive outside secret.do().

    object: the object itself (never shown by repr); type: its type's
    qualified name; size: sys.getsizeof() of it; address: id();
    traceback: where it was allocated (a tracemalloc.Traceback when
    tracemalloc traced the allocation, else None); held_by: up to
    `referrers` chains, each a string from what holds the chain (a module
    global, a class attribute, a frame's local, a thread's state) down to
    the object, e.g. "module 'app.cache': CACHE['db'] -> [0]";
    "(no referrer found: ...)" when no object nor frame refers to it.
    """

    __slots__ = ("object", "type", "size", "address", "traceback", "held_by")

    def __init__(self, obj, traceback, held_by):
        self.object = obj
        t = type(obj)
        self.type = "%s.%s" % (t.__module__, t.__qualname__) \
            if t.__module__ != "builtins" else t.__qualname__
        try:
            self.size = sys.getsizeof(obj)
        except Exception:
            self.size = -1
        self.address = id(obj)
        self.traceback = traceback
        self.held_by = held_by

    def __repr__(self):
        return "<secret survivor %s, %d bytes at %#x, held by %s>" % (
            self.type, self.size, self.address,
            "; ".join(self.held_by) or "?")

    def format(self):
        """Lines for a report: the object, what holds it, where it was
        allocated."""
        lines = ["%s, %d bytes at %#x" % (self.type, self.size,
                                           self.address)]
        for h in self.held_by:
            lines.append("  held by " + h)
        if self.traceback is not None:
            lines.append("  allocated at:")
            lines.extend("    " + l for l in self.traceback.format())
        else:
            lines.append("  allocated at: unknown (start tracemalloc "
                         "before do() to see where)")
        return lines


def _is_secret_name(x):
    return _secret._is_secret(x)


def _key_text(k):
    # A key is shown only if it is not itself secret, and short.
    if isinstance(k, (str, int, float, bool, type(None))) \
            and not _is_secret_name(k):
        r = repr(k)
        return r if len(r) <= 60 else r[:57] + "..."
    return "<%s key>" % ("secret" if _is_secret_name(k) else type(k).__name__)


class _Names:
    """Which dicts are a module's globals or a class's namespace."""

    def __init__(self):
        self.module_dicts = {}
        for name, m in list(sys.modules.items()):
            d = getattr(m, "__dict__", None)
            if isinstance(d, dict):
                self.module_dicts.setdefault(id(d), name)


def _edge(holder, obj, parent):
    """How holder refers to obj, as a suffix ('.x', "['k']", '[3]'); parent:
    what holds holder (to write an object's __dict__ entries as
    attributes)."""
    if isinstance(holder, dict):
        attr = parent is not None and not isinstance(parent, dict) and \
            getattr(parent, "__dict__", None) is holder
        for k, v in list(holder.items()):
            if v is obj:
                if attr and isinstance(k, str) and not _is_secret_name(k):
                    return "." + k
                return "[%s]" % _key_text(k)
            if k is obj:
                return " (a key)"
        return " (in a dict)"
    if isinstance(holder, tuple) and type(parent).__name__ == "function" \
            and parent.__closure__ is holder:
        for i, v in enumerate(holder):
            if v is obj:
                return ": closure variable %r" % \
                    parent.__code__.co_freevars[i]
    if isinstance(holder, (list, tuple)):
        for i, v in enumerate(holder):
            if v is obj:
                return "[%d]" % i
        return " (in a %s)" % type(holder).__name__
    if isinstance(holder, (set, frozenset)):
        return " (a member)"
    if type(holder).__name__ == "cell":
        return ""
    if type(holder).__name__ == "function":
        clo = holder.__closure__ or ()
        for i, c in enumerate(clo):
            if c is obj:
                return ": closure variable %r" % holder.__code__.co_freevars[i]
        if holder.__closure__ is obj:
            return ""
        for a in ("__defaults__", "__kwdefaults__", "__dict__", "__code__"):
            if getattr(holder, a, None) is obj:
                return "." + a
        return " (in a function)"
    if isinstance(holder, type):
        if holder.__dict__ is obj or type.__dict__["__dict__"] is obj:
            return ""
        return " (in a class)"
    if type(holder).__name__ == "module":
        return " (its state)" if holder.__dict__ is not obj else ""
    try:
        d = object.__getattribute__(holder, "__dict__")
    except Exception:
        d = None
    if d is obj:
        return ""
    if isinstance(d, dict):
        for k, v in list(d.items()):
            if v is obj and isinstance(k, str) and not _is_secret_name(k):
                return "." + k
    for a in getattr(type(holder), "__slots__", ()) or ():
        if isinstance(a, str) and getattr(holder, a, None) is obj:
            return "." + a
    return " (in a %s)" % type(holder).__name__


def _root(holder, names):
    """The text of a chain's top, or None if holder is not a root."""
    if isinstance(holder, dict) and id(holder) in names.module_dicts:
        return "module %r: " % names.module_dicts[id(holder)]
    if isinstance(holder, type):
        return "class %s.%s" % (holder.__module__, holder.__qualname__)
    if type(holder).__name__ == "module":
        return "module %r" % holder.__name__
    return None


def _frame_text(info):
    code, name, line, tid = info
    return "local %r of %s (%s:%d, thread %#x)" % (
        name, code.co_qualname, code.co_filename, line, tid)


def _ignore(up, *containers):
    """The ids of this module's own containers: up, its lists and their
    tuples, and the other containers given (not what they hold)."""
    ids = {id(up)}
    ids.update(id(c) for c in containers)
    for v in up.values():
        ids.add(id(v))
        ids.update(id(x) for x in v)
    return ids


def _holds(refs, ref):
    # No closure here: a cell would hold ref, and be found as a referrer.
    for _, r in refs:
        if r is ref:
            return True
    return False


def _climb(targets, names, max_per, depth, own_codes, own):
    """{id(t): [text, ...]} for each target t (a survivor). own: the
    caller's containers that hold targets."""
    up = {}             # id(o) -> [(kind, referrer)]
    level = dict(targets)
    seen = set(level)
    for _ in range(depth):
        if not level:
            break
        nxt = {}
        ignore = _ignore(up, level, nxt, seen, *own)
        pairs = _secret._referrers(list(level), max_per, ignore)
        del ignore
        while pairs:
            t, kind, ref = pairs.pop()
            if kind == _NONE or (kind == _LOCAL and ref[0] in own_codes):
                continue
            refs = up.setdefault(id(t), [])
            if kind == _OBJECT and _holds(refs, ref):
                continue        # a container holding it twice
            refs.append((kind, ref))
            if kind == _OBJECT and _root(ref, names) is None \
                    and id(ref) not in seen:
                seen.add(id(ref))
                nxt[id(ref)] = ref
        level = nxt
    del level, seen

    result = {}
    for i, t in targets.items():
        result[i] = _chains(t, {i}, max_per, up, names) or [
            "(no referrer found: C code, a reference leak, or a frame's "
            "value stack)"]
    return result


def _chains(o, visiting, limit, up, names):
    """Texts from a root down to o."""
    out = []
    for kind, ref in reversed(up.get(id(o), [])):
        if len(out) >= limit:
            break
        if kind == _LOCAL:
            out.append(_frame_text(ref))
            continue
        if kind == _THREAD:
            out.append("thread %#x's %s" % (ref[1], ref[0]))
            continue
        if id(ref) in visiting:
            continue
        top = _root(ref, names)
        if top is not None:
            edge = _edge(ref, o, None)
            if top.endswith(": "):
                # A module's global: its bare name.
                if edge.startswith("['") and edge.endswith("']"):
                    edge = edge[2:-2]
                out.append(top + edge.lstrip())
            else:
                out.append(top + edge)
            continue
        parents = up.get(id(ref), [])
        parent = parents[-1][1] if parents and \
            parents[-1][0] == _OBJECT else None
        edge = _edge(ref, o, parent).strip()
        heads = _chains(ref, visiting | {id(ref)}, limit - len(out), up,
                    names) or \
            ["(a %s held by no object found)" % type(ref).__name__]
        for head in heads:
            if not edge:
                out.append(head)
            elif edge.startswith(":"):
                out.append(head + edge)
            else:
                out.append(head + " -> " + edge)
    return out



def _reachable_secrets(keep):
    """The secret objects reachable from keep (through anything)."""
    out = {}
    todo = list(keep)
    seen = set()
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if _secret._is_secret(o):
            out[id(o)] = o
        if isinstance(o, type(sys)):
            continue    # a module: its globals are not what keep meant
        todo.extend(gc.get_referents(o))
    return out


def survivors(keep=(), *, referrers=3, depth=8):
    """Return the secret objects alive now, as a list of Survivor.

    Call it outside secret.do() (it raises RuntimeError inside, and when
    this build does not erase: secret.supported() is False). Every object
    that code in secret mode made is listed while it lives, so call it when
    no other thread is inside do(), or its work in progress is listed too.
    keep: objects you keep on purpose (what do() returned); they and the
    secret objects reachable from them are not listed. referrers: at most
    this many chains of referrers per survivor; depth: at most this many
    steps up each chain. tracemalloc, started before do(), gives each
    survivor the traceback of its allocation.
    """
    if not _secret.supported():
        raise RuntimeError(
            "secret.survivors(): this build does not erase "
            "(secret.supported() is False): nothing is a secret block, so "
            "no survivor can be told from other objects")
    if _secret.enabled():
        raise RuntimeError("secret.survivors() lists what outlives "
                           "secret.do(): call it outside do()")
    if referrers < 1 or depth < 1:
        raise ValueError("referrers and depth must be at least 1")
    own_codes = {survivors.__code__, _climb.__code__}
    kept = _reachable_secrets(keep)
    found = {}
    pairs = _secret._referrers(None, referrers, {id(kept)})
    while pairs:
        t, kind, ref = pairs.pop()
        if kind == _LOCAL and ref[0] in own_codes:
            continue
        if id(t) not in kept:
            found[id(t)] = t
    del pairs
    if not found:
        return []
    names = _Names()
    held = _climb(found, names, referrers, depth, own_codes, (found, kept))
    tracing = False
    tm = sys.modules.get("tracemalloc")
    if tm is not None and tm.is_tracing():
        tracing = True
    out = []
    for i, t in found.items():
        tb = tm.get_object_traceback(t) if tracing else None
        out.append(Survivor(t, tb, held[i]))
    out.sort(key=lambda s: (s.type, s.address))
    return out
