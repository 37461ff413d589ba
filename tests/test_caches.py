"""Caches made before secret.do() are read but not filled in secret mode
(spec §3.4, issue 20 §3; patches 0020 and 0021): functools.lru_cache (the C
wrapper and the pure-Python one), re's pattern caches and template cache,
urllib.parse.urlsplit (an lru_cache) and the quoter cache behind quote().

Each case has a control: the same call outside do() stores an entry that
holds the secret. Each protected case checks that an entry made before
do() is still a hit inside it, and that nothing computed in do() stays.
The memory scrape of the same cases is tests/test_residue_caches.py.
"""

import functools
import gc
import importlib.util
import os
import random
import re
import sys
import threading
import urllib.parse

import pytest

import secret


def plain(func, *args, **kwargs):
    return func(*args, **kwargs)


def new_secret():
    return os.urandom(12).hex()


def shows(obj, key, depth=3):
    """Whether key appears in obj or in what it refers to (a few levels:
    a cache dict, its keys, the links of a bounded lru_cache)."""
    seen, todo = set(), [(obj, 0)]
    while todo:
        o, d = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, (str, bytes)):
            if (key if isinstance(o, str) else key.encode()) in o:
                return True
            continue
        if d < depth:
            todo += [(r, d + 1) for r in gc.get_referents(o)
                     if not isinstance(r, type)]
    return False


def lru_cache_dict(wrapper):
    """The dict of a C lru_cache wrapper (reached through the GC)."""
    dicts = [r for r in gc.get_referents(wrapper) if type(r) is dict
             and r is not getattr(wrapper, "__dict__", None)]
    assert len(dicts) == 1, dicts
    return dicts[0]


# --- urllib.parse ------------------------------------------------------------

@pytest.mark.parametrize("protect", [False, True])
def test_urlsplit_of_a_dsn(protect):
    password = new_secret()
    dsn = "postgresql://app:%s@db.internal:5432/orders" % password
    urllib.parse.urlsplit("https://example.org/before")   # made before do
    before = urllib.parse.urlsplit.cache_info()

    def connect():
        parts = urllib.parse.urlsplit(dsn)
        # A read of the entry made before do() is still a hit.
        urllib.parse.urlsplit("https://example.org/before")
        return parts.password == password

    assert (secret.do if protect else plain)(connect)
    after = urllib.parse.urlsplit.cache_info()
    assert after.hits == before.hits + 1
    cache = lru_cache_dict(urllib.parse.urlsplit)
    assert shows(cache, password) != protect
    assert (after.currsize == before.currsize + 1) != protect


@pytest.mark.parametrize("protect", [False, True])
def test_quote_records_no_byte_it_saw(protect):
    # The quoter cache of quote()/quote_from_bytes() keeps one entry per
    # byte value quoted: which bytes a password holds.
    quoter = urllib.parse._byte_quoter_factory(b"/").__self__
    urllib.parse.quote_from_bytes(b"/before")    # the quoter exists
    known = dict(quoter)
    raw = bytes(range(128, 256))
    raw = bytes(random.Random(os.urandom(8)).sample(raw, 16))

    def f():
        return urllib.parse.quote_from_bytes(raw)

    quoted = (secret.do if protect else plain)(f)
    assert quoted == "".join("%%%02X" % b for b in raw)
    new = set(quoter) - set(known)
    assert (new == set()) == protect, new
    if not protect:
        assert new == set(raw)


# --- re -------------------------------------------------------------------

@pytest.mark.parametrize("protect", [False, True])
def test_re_pattern_cache(protect):
    token = new_secret()
    known = re.compile(r"(\w+)=(\d+)")          # cached before do()

    def f():
        # A pattern built from the secret (a filter on a token's value).
        m = re.search(re.escape(token) + r"\d*", "x" + token + "1")
        again = re.compile(r"(\w+)=(\d+)")
        return m is not None and again is known

    assert (secret.do if protect else plain)(f)
    assert shows([re._cache, re._cache2], token) != protect


@pytest.mark.parametrize("protect", [False, True])
def test_re_template_cache(protect):
    # re.sub's replacement string: the template cache (an lru_cache).
    token = new_secret()

    def f():
        # A group reference makes it a template (a literal is not cached).
        return re.sub(r"(secret)=\w+", r"\1=" + token, "secret=x")

    assert (secret.do if protect else plain)(f) == "secret=" + token
    cache = lru_cache_dict(re._compile_template)
    assert shows(cache, token) != protect


def test_re_keeps_working_in_secret_mode():
    # Every kind of call, the errors included, as outside.
    def f(token):
        assert re.fullmatch("[0-9a-f]+", token)
        assert re.compile(re.compile("a")).pattern == "a"
        with pytest.raises(ValueError):
            re.compile(re.compile("a"), re.I)
        with pytest.raises(TypeError):
            re.compile(1)
        with pytest.raises(re.error):
            re.compile("(" + token)
        return re.findall("[0-9]", token)

    token = new_secret()
    assert secret.do(f, token) == re.findall("[0-9]", token)


# --- xml.etree.ElementPath ------------------------------------------------

@pytest.mark.parametrize("protect", [False, True])
def test_elementpath_cache(protect):
    import xml.etree.ElementPath as ElementPath
    import xml.etree.ElementTree as ET
    token = new_secret()
    doc = ET.fromstring('<s><session id="%s">ok</session></s>' % token)
    doc.find(".//session")                 # a path cached before do()

    def f():
        hit = doc.find(".//session[@id='%s']" % token)
        return hit.text, doc.find(".//session").text

    assert (secret.do if protect else plain)(f) == ("ok", "ok")
    assert (".//session",) in ElementPath._cache
    assert shows(ElementPath._cache, token) != protect


# --- functools.lru_cache: C and pure-Python, every shape -------------------

def python_functools():
    """functools as built without _functools: the pure-Python lru_cache."""
    spec = importlib.util.find_spec("functools")
    mod = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("_functools")
    sys.modules["_functools"] = None
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules["_functools"] = saved
    assert not isinstance(mod._lru_cache_wrapper, type)  # the Python one
    return mod


PY_FUNCTOOLS = python_functools()


def cache_shows(wrapper, key):
    if isinstance(wrapper, functools._lru_cache_wrapper):
        return shows(lru_cache_dict(wrapper), key)
    # The Python wrapper keeps its dict in a closure cell.
    cells = [c.cell_contents for c in wrapper.__wrapped__.__closure__ or ()]
    cells += [c.cell_contents for c in wrapper.__closure__]
    return shows([c for c in cells if isinstance(c, dict)], key, depth=4)


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("maxsize", [None, 1, 2, 128])
@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize("protect", [False, True])
def test_lru_cache(impl, maxsize, typed, protect):
    ft = functools if impl == "c" else PY_FUNCTOOLS

    @ft.lru_cache(maxsize=maxsize, typed=typed)
    def derive(a, *, b=""):
        return "derived-" + a + b

    derive("before")                       # an entry made before do()
    before = derive.cache_info()
    key = new_secret()

    def f():
        # A read of the entry made before: a hit. Then the secret calls:
        # outside do() the last one stays even in a cache of size 1.
        return [derive("before"), derive(key), derive(key),
                derive("x", b=key)]

    out = (secret.do if protect else plain)(f)
    assert out == ["derived-before", "derived-" + key, "derived-" + key,
                   "derived-x" + key]
    info = derive.cache_info()
    if protect:
        # Nothing stored, nothing evicted: the old entry is still there.
        assert info.currsize == before.currsize
        assert info.hits == before.hits + 1
        assert not cache_shows(derive, key)
        derive("before")
        assert derive.cache_info().hits == before.hits + 2
    else:
        assert cache_shows(derive, key)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_lru_cache_in_a_thread_started_in_do(impl):
    # A thread started in do() is in secret mode for life.
    ft = functools if impl == "c" else PY_FUNCTOOLS

    @ft.cache
    def derive(a):
        return a * 2

    key = new_secret()

    def f():
        t = threading.Thread(target=derive, args=(key,))
        t.start()
        t.join()

    secret.do(f)
    assert derive.cache_info().currsize == 0
    derive(key)                            # the control, outside
    assert derive.cache_info().currsize == 1


def test_generated_cache_calls():
    # Many calls, shapes and orders, mixed in and out of do(), on bounded
    # caches that fill and evict: nothing computed in do() is ever stored,
    # everything computed outside is stored as upstream stores it.
    rng = random.Random(20)
    for round_ in range(40):
        maxsize = rng.choice([1, 2, 3, 8, None])
        typed = rng.random() < 0.5
        impl = rng.choice([functools, PY_FUNCTOOLS])
        shadow = impl is functools and PY_FUNCTOOLS or functools

        @impl.lru_cache(maxsize=maxsize, typed=typed)
        def f(*args, **kw):
            return ("r", args, tuple(sorted(kw.items())))

        # A shadow cache that only sees the calls made outside do(): both
        # must end in the same state.
        @shadow.lru_cache(maxsize=maxsize, typed=typed)
        def g(*args, **kw):
            return ("r", args, tuple(sorted(kw.items())))

        secrets_used = []
        for _ in range(rng.randint(5, 40)):
            kind = rng.random()
            if kind < 0.4:
                k = new_secret()
                secrets_used.append(k)
                args = rng.choice([(k,), (k, 1), (1, k)])
                kw = rng.choice([{}, {"x": k}, {"y": 2}])
                r = secret.do(f, *args, **kw)
                assert r == ("r", args, tuple(sorted(kw.items())))
            else:
                a = rng.choice(["a", "b", "c", 1, 1.0, 2])
                kw = rng.choice([{}, {"y": 2}])
                assert f(a, **kw) == g(a, **kw)
                # A call in do() of what may be cached: a hit moves the
                # entry (mirrored on g), a miss stores nothing.
                if rng.random() < 0.3:
                    hits = f.cache_info().hits
                    assert secret.do(f, a, **kw) == ("r", (a,), tuple(
                        sorted(kw.items())))
                    if f.cache_info().hits > hits:
                        g(a, **kw)
        assert not any(cache_shows(f, k) for k in secrets_used)
        fi, gi = f.cache_info(), g.cache_info()
        assert fi.currsize == gi.currsize
