"""Caches made before secret.do() are read but not filled in secret mode
(spec §3.4, issue 20 §3; patches 0018 and 0019): functools.lru_cache (the C
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
    # In do() a hit is served but not counted (review F3).
    assert after.hits == before.hits + (not protect)
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


def lru_keys(wrapper):
    """The keys of an lru_cache, least recently used first (a key of
    several arguments as a tuple, whichever the implementation)."""
    if isinstance(wrapper, functools._lru_cache_wrapper):
        # The C wrapper's traverse visits its type, then each link, oldest
        # first (key, result, the link's type), then the rest.
        refs = gc.get_referents(wrapper)
        keys, i = [], 1
        while (i + 2 < len(refs) and isinstance(refs[i + 2], type)
               and refs[i + 2].__name__ == "_lru_list_elem"):
            keys.append(refs[i])
            i += 3
        if not keys:                  # unbounded: the dict's order
            keys = list(lru_cache_dict(wrapper))
    else:
        cells = dict(zip(wrapper.__code__.co_freevars,
                         (c.cell_contents for c in wrapper.__closure__)))
        if "root" not in cells:
            keys = list(cells.get("cache", ()))
        else:
            root, keys = cells["root"], []
            link = root[1]
            while link is not root:
                keys.append(link[2])
                link = link[1]
    # (Each implementation marks keyword arguments with an object() of its
    # own.)
    return [tuple("kw" if type(x) is object else x for x in k)
            if isinstance(k, (list, tuple)) else k for k in keys]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("maxsize", [None, 0, 8, 256])
@pytest.mark.parametrize("protect", [False, True])
def test_lru_cache_hit_moves_and_counts_nothing(impl, maxsize, protect):
    # Review F3: a memoized per-byte helper warmed before do(): a hit in do()
    # moved its entry to the most recent end (the cache's tail read after
    # do() was the key's bytes, in order) and counted. In do() a hit is
    # served, nothing moves and no count changes.
    ft = functools if impl == "c" else PY_FUNCTOOLS

    @ft.lru_cache(maxsize=maxsize)
    def sbox(b):
        return (b * 7 + 3) & 0xFF

    for b in range(256):
        sbox(b)
    order, info = lru_keys(sbox), sbox.cache_info()
    key = os.urandom(8)

    def work():
        return bytes(sbox(b) for b in key)

    out = (secret.do if protect else plain)(work)
    assert out == bytes((b * 7 + 3) & 0xFF for b in key)
    if protect:
        assert (lru_keys(sbox), sbox.cache_info()) == (order, info)
    else:
        # The control: counted; a bounded cache moved the key's bytes last.
        assert sbox.cache_info() != info
        if maxsize:
            tail = lru_keys(sbox)[-len(set(key)):]
            assert tail == list(dict.fromkeys(reversed(key)))[::-1]


@pytest.mark.parametrize("protect", [False, True])
def test_re_cache_hit_moves_nothing(protect):
    # Review F3: a pattern found in re._cache was moved to its end and put
    # into _cache2 (evicting its oldest): which patterns func used, and in
    # which order, survived do().
    pats = [r"^%x+$" % d for d in range(16)]
    for p in pats:
        re.compile(p)
    for i in range(300):                # _cache2 (256) no longer has pats
        re.compile("filler%d" % i)
    assert not any((str, p, 0) in re._cache2 for p in pats)
    state = (list(re._cache), list(re._cache2))
    key = os.urandom(4).hex()

    def work():
        return [bool(re.match(pats[int(ch, 16)], ch)) for ch in key]

    assert (secret.do if protect else plain)(work) == [True] * 8
    assert ((list(re._cache), list(re._cache2)) == state) == protect


@pytest.mark.parametrize("protect", [False, True])
def test_elementpath_miss_clears_nothing(protect):
    # Review F3: a miss in do() emptied ElementPath's cache when it held
    # more than 100 paths.
    import xml.etree.ElementPath as ElementPath
    import xml.etree.ElementTree as ET
    doc = ET.fromstring("<a><b/></a>")
    for i in range(101 - len(ElementPath._cache)):
        doc.find("./b%d" % i)     # (a plain tag is found in C)
    assert len(ElementPath._cache) > 100
    state = list(ElementPath._cache)
    token = new_secret()

    def f():
        return doc.find(".//b[@id='%s']" % token)

    assert (secret.do if protect else plain)(f) is None
    assert (list(ElementPath._cache) == state) == protect


@pytest.mark.parametrize("protect", [False, True])
def test_ipaddress_netmask_cache(protect):
    # Review F6: IPv4Network's and IPv6Network's netmask caches are dicts of
    # their own (not lru_caches).
    import ipaddress
    rng = random.Random(os.urandom(8))
    v4 = ipaddress.IPv4Network._netmask_cache
    v6 = ipaddress.IPv6Network._netmask_cache
    mask = next(m for m in (str(ipaddress.IPv4Address(
        (1 << 32) - (1 << (32 - n)))) for n in rng.sample(range(1, 33), 32))
        if m not in v4)
    plen = next(str(n) for n in rng.sample(range(1, 129), 128)
                if str(n) not in v6)
    before = (dict(v4), dict(v6))

    def work():
        net4 = ipaddress.ip_interface("10.20.30.40/" + mask).network
        net6 = ipaddress.ip_network("2001:db8::/" + plen, strict=False)
        return str(net4), str(net6)

    (secret.do if protect else plain)(work)
    assert ((dict(v4), dict(v6)) == before) == protect


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
        # Nothing stored, nothing evicted: the old entry is still there,
        # and was a hit, served but not counted (review F3).
        assert info == before
        assert not cache_shows(derive, key)
        derive("before")
        assert derive.cache_info().hits == before.hits + 1
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
                # A call in do() of what may be cached: a hit neither
                # moves the entry nor counts, a miss stores nothing.
                if rng.random() < 0.3:
                    info = f.cache_info()
                    assert secret.do(f, a, **kw) == ("r", (a,), tuple(
                        sorted(kw.items())))
                    assert f.cache_info() == info
        assert not any(cache_shows(f, k) for k in secrets_used)
        fi, gi = f.cache_info(), g.cache_info()
        assert fi.currsize == gi.currsize
        # The same counts and the same order as the shadow's.
        assert fi == gi
        assert lru_keys(f) == lru_keys(g)
