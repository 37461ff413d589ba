"""The residue scanner's own tests (scripts/residuelib, the command
scripts/residue.py).

A small C program (tests/residue/plant.c, compiled here with gcc) puts a
secret exactly where it is asked to (heap, main stack, a named thread's
stack, an mmap'd region, the alternate signal stack, CPU registers) and
nowhere else; the scanner must find it there, attributed to the right
mapping or register, and must find nothing that was never planted.
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import residuelib as residue  # noqa: E402

PLANT_C = os.path.join(ROOT, "tests", "residue", "plant.c")


def _cpuinfo(key):
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def _cpu_flags():
    return set(_cpuinfo("flags").split())


AVX512 = {"avx512f", "avx512bw"} <= _cpu_flags()
AMD = _cpuinfo("vendor_id") in ("AuthenticAMD", "HygonGenuine")


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("plant") / "plant")
    # -z now: no lazy binding, whose resolver saves vector registers (and
    # so whatever secret they hold) on the stack: copies we did not plant.
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread",
                    "-Wl,-z,now", "-o", exe, PLANT_C], check=True)
    return exe


def run_plant(exe, where, secret=None, needles=None, core=False):
    secret = secret or residue.Secret()
    needles = needles or secret.needles()

    def argv(path, ready, go):
        return [exe, path, str(ready), str(go)] + list(where)

    info, mem, core_scan = residue.run_child(argv, secret, needles,
                                             core=core, timeout=60)
    assert info.get("ok"), info
    assert info["returncode"] == 0, info
    return info, mem, core_scan


# -- memory: every place a copy can be, attributed ----------------------------

@pytest.mark.parametrize("where, label", [
    ("heap", "heap"),
    ("stack", "stack:main"),
    ("thread", "stack:thread:planter"),
    ("mmap", "anon"),
    ("altstack", "altstack"),
])
def test_finds_planted_secret_where_it_is(plant, where, label):
    _, mem, _ = run_plant(plant, [where])
    assert mem.by_label() == {label: 1}
    assert mem.by_form() == {"raw": 1}


def test_finds_every_planted_copy_at_once(plant):
    _, mem, _ = run_plant(plant, ["heap", "stack", "thread", "mmap",
                                  "altstack"])
    assert mem.by_category() == {"heap": 1, "stack:main": 1,
                                 "stack:thread": 1, "anon": 1, "altstack": 1}


def test_does_not_find_a_secret_never_planted(plant):
    planted, absent = residue.Secret(), residue.Secret()
    never = absent.needles()
    for n in never:
        n.form = "never-" + n.form
    # One scan looks for both: the planted one is the control.
    _, mem, _ = run_plant(plant, ["heap", "stack", "mmap"], secret=planted,
                          needles=planted.needles() + never)
    assert mem.by_form() == {"raw": 3}
    assert mem.bytes_scanned > 1 << 20


def test_child_that_plants_nothing_has_no_copy(plant):
    secret = residue.Secret()
    _, mem, _ = run_plant(plant, ["none"], secret=secret)
    assert mem.copies == 0
    # Control: the same program, the same secret, planted, is found.
    _, mem, _ = run_plant(plant, ["heap"], secret=secret)
    assert mem.copies == 1


def test_scanner_holds_no_copy_of_what_it_looks_for(plant):
    secret = residue.Secret()
    # Every form it derives half by half (derived HMAC/PBKDF2 values exist
    # whole for a moment when computed, as documented, so not those).
    needles = secret.needles(residue.BASE_FORMS + ("int",))
    # The scanner has just read a child's memory holding the secret and
    # parsed a core with it in registers ...
    _, mem, core = run_plant(plant, ["heap", "regs"], secret=secret,
                             needles=needles, core=True)
    assert mem.copies >= 1 and core.reg_hits
    # ... yet scanning its own process finds none of its forms.
    me = residue.scan_process(os.getpid(), needles)
    assert me.copies == 0, me.hits
    assert me.bytes_scanned > 1 << 20
    # Control: a copy this process does hold is found by the same scan.
    other = residue.Secret()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        "residue-self-%d" % os.getpid())
    other.write(path)
    try:
        with open(path, "rb") as f:
            held = f.read()
        me = residue.scan_process(os.getpid(), other.needles(("raw",)))
        assert me.copies >= 1
        del held
    finally:
        os.unlink(path)


def test_unreadable_regions_are_skipped_and_counted(plant):
    _, mem, _ = run_plant(plant, ["thread"])
    # The thread stack's guard page and [vsyscall] have no read
    # permission; [vvar] refuses reads. None of it stops the scan.
    assert mem.pages_no_access >= 1
    assert mem.copies == 1


# -- forms: the parent's derivation matches what Python really stores --------

FORMS_CHILD = textwrap.dedent("""
    import base64, hashlib, hmac, json, os, sys
    path, ready, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, "rb") as f:
        key = f.read()
    s = key.decode()
    keep = [key, s + "\\u20ac", s + "\\U0001f511", key.hex(),
            base64.b64encode(key), int.from_bytes(key, "big"),
            hmac.new(key, b"msg", "sha256").digest(),
            hashlib.pbkdf2_hmac("sha256", key, b"salt", 50),
            float(str(int.from_bytes(key[:12], "big")))]   # dtoa's Bigints
    os.write(ready, b'{"ok": true}\\n')
    os.read(go, 1)
""")


def test_every_form_is_found_as_python_stores_it():
    secret = residue.Secret()
    needles = secret.needles(residue.BASE_FORMS + ("int",),
                             (("hmac", "sha256", b"msg"),
                              ("pbkdf2", "sha256", b"salt", 50),
                              ("dtoa", 12)))

    def argv(path, ready, go):
        return [sys.executable, "-I", "-c", FORMS_CHILD, path, str(ready),
                str(go)]

    info, mem, _ = residue.run_child(argv, secret, needles, timeout=60)
    assert info["ok"]
    found = mem.by_form()
    for form in ("raw", "ucs2", "ucs4", "hex", "base64", "int", "hmac",
                 "pbkdf2", "dtoa"):
        assert found.get(form, 0) >= 1, (form, found)


def test_half_keyed_hmac_and_pbkdf2_match_the_standard_library():
    key = os.urandom(32)
    mac = residue.needles._HalfKeyedHMAC("sha256", key[:16], key[16:])
    assert mac.digest(b"abc") == hmac.new(key, b"abc", "sha256").digest()
    assert mac.pbkdf2(b"salt", 7) == hashlib.pbkdf2_hmac("sha256", key,
                                                         b"salt", 7)


def test_int_digits_match_python_ints():
    for _ in range(20):
        data = os.urandom(32)
        n = int.from_bytes(data, "big")
        digits = []
        while n:
            digits.append(n & 0x3fffffff)
            n >>= 30
        assert residue.needles._digits30(data[:16], data[16:]) == digits


# -- the search itself: read boundaries and unreadable pages ------------------

def _search(needles, mem, readinto=None):
    hits = []
    s = residue.scan._Searcher(needles, lambda n, addr: hits.append(addr))

    def whole(addr, view):
        view[:] = mem[addr:addr + len(view)]
        return len(view)

    bad = s.scan(0, len(mem), readinto or whole)
    s.wipe()
    return hits, bad


def test_copies_across_read_boundaries_are_found_once(monkeypatch):
    monkeypatch.setattr(residue.scan, "CHUNK", 4096)
    needles = residue.Secret().needles(("raw", "ucs4"))
    # The searcher sees the patch: it reads 4 KiB at a time.
    assert len(residue.scan._Searcher(needles, None).buf) < 2 * 4096
    for n in needles:
        for start in (4096 - n.length - 1, 4096 - n.length, 4096 - 17,
                      4096 - 1, 4096, 8192 - 31, 5 * 4096 - n.length):
            mem = bytearray(5 * 4096)
            n.write_into(mem, start)
            hits, bad = _search([n], mem)
            assert (hits, bad) == ([start], 0), (n.form, start)


def test_overlapping_and_adjacent_copies_are_each_counted():
    n = residue.Secret().needles(("raw",))[0]
    mem = bytearray(4096)
    n.write_into(mem, 10)
    n.write_into(mem, 10 + n.length)         # adjacent
    hits, _ = _search([n], mem)
    assert hits == [10, 10 + n.length]


def test_unreadable_page_is_skipped_not_fatal(monkeypatch):
    monkeypatch.setattr(residue.scan, "CHUNK", 4096)
    n = residue.Secret().needles(("raw",))[0]
    mem = bytearray(4 * 4096)
    n.write_into(mem, 100)                   # page 0: found
    n.write_into(mem, 2 * 4096 + 8)          # page 2 is unreadable
    n.write_into(mem, 3 * 4096 + 8)          # page 3: found

    def readinto(addr, view):
        if addr // 4096 == 2:
            raise OSError(5, "Input/output error")
        end = min(len(mem), addr + len(view))
        view[:end - addr] = mem[addr:end]
        return end - addr

    hits, bad = _search([n], mem, readinto)
    assert bad == 1
    assert hits == [100, 3 * 4096 + 8]


# -- core dumps: PT_LOAD memory and register notes ----------------------------

def test_core_attributes_planted_registers_to_their_names(plant):
    flags = _cpu_flags()
    info, _, core = run_plant(plant, ["regs"], core=True)
    hits = {(h.register, h.form, h.needle_range) for h in core.reg_hits}
    assert ("xmm7", "raw", (0, 16)) in hits, hits        # vector
    assert ("r12", "raw", (16, 24)) in hits, hits        # general
    if "avx" in flags:
        assert ("ymm9", "raw", (0, 32)) in hits, hits
    if AVX512:
        zmm = [h for h in core.reg_hits if h.register == "zmm20"]
        assert [(h.reg_range, h.needle_range) for h in zmm] == \
            [((32, 64), (0, 32))]
    # The hits are the main thread's (the only thread).
    assert {h.tid for h in core.reg_hits} == {int(t) for t in core.threads}


@pytest.mark.skipif(not AVX512, reason="no AVX-512 (F and BW) on this CPU")
@pytest.mark.skipif(AMD, reason="gdb 13's gcore (Debian 12) writes no "
                    "opmask registers into the core on AMD's XSAVE layout "
                    "(the kernel's ptrace state has them: measured on an "
                    "AMD EPYC with AVX-512)")
def test_core_attributes_planted_opmask_register(plant):
    _, _, core = run_plant(plant, ["regs"], core=True)
    hits = {(h.register, h.form, h.needle_range) for h in core.reg_hits}
    assert ("k3", "raw", (8, 16)) in hits, hits


def test_core_has_no_register_hit_for_a_secret_never_planted(plant):
    planted, absent = residue.Secret(), residue.Secret()
    _, _, core = run_plant(plant, ["regs"], secret=planted,
                           needles=absent.needles(), core=True)
    assert core.reg_hits == []
    assert core.copies == 0
    # Control: the planted one is in the registers of a core of the same
    # program (test above) and here in its memory:
    _, _, core = run_plant(plant, ["regs"], secret=planted, core=True)
    assert core.reg_hits and core.copies >= 1


def test_core_memory_is_attributed_like_the_live_scan(plant):
    _, mem, core = run_plant(plant, ["heap", "stack", "thread", "mmap"],
                             core=True)
    assert core.by_category() == mem.by_category() == {
        "heap": 1, "stack:main": 1, "stack:thread": 1, "anon": 1}
    # Each thread of the core has its registers (NT_PRSTATUS and more).
    assert len(core.threads) == 2


def test_core_parser_reads_elf_and_notes(plant, tmp_path):
    secret = residue.Secret()

    def argv(path, ready, go):
        return [plant, path, str(ready), str(go), "regs"]

    core_path = str(tmp_path / "core")
    residue.run_child(argv, secret, secret.needles(), core=True,
                      keep_core=core_path, timeout=60)
    cf = residue.CoreFile(core_path)
    assert cf.machine == residue.EM_X86_64 or cf.machine == \
        residue.EM_AARCH64
    assert cf.segments
    (tid, regs), = cf.registers()
    for name in ("rip", "rsp", "r12", "st0/mm0", "vec0", "vec31", "k0"):
        assert name in regs, name
    assert len(regs["rip"]) == 8
    assert len(regs["vec0"]) in (16, 32, 64)
    cf.wipe()
    assert cf.registers() == []


def test_report_json_and_table_have_every_run():
    py = sys.executable
    sc = residue.scenarios(names=["baseline", "live"])
    report = residue.run_matrix([("here", py)], sc, jobs=2)
    json.dumps(report)
    assert {(r["scenario"], r["mode"]) for r in report["runs"]} == {
        ("baseline", "control"), ("baseline", "protected"),
        ("live", "control"), ("live", "protected")}
    text = residue.table(report)
    assert "baseline" in text and "live: found" in text


def test_command_lists_and_runs_a_scenario():
    """scripts/residue.py, the command, runs the package's CLI."""
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "residue.py")]
    r = subprocess.run(cmd + ["--list"], capture_output=True, text=True,
                       check=True)
    assert "\nbaseline " in "\n" + r.stdout
    r = subprocess.run(cmd + ["-s", "live", "--python",
                              "here=" + sys.executable, "--json", "-"],
                       capture_output=True, text=True, check=True)
    report = json.loads(r.stdout)
    assert [v["verdict"] for v in report["verdicts"]] == ["live: found"]


def test_scenario_missing_a_required_module_is_na(tmp_path):
    """A scenario whose REQUIRES the interpreter lacks runs nothing: its
    runs are n/a (not errors) and its verdict says what is missing; the
    same scenario where the module exists runs."""
    body = textwrap.dedent('''
        """Needs a module."""
        REQUIRES = (%r,)

        def work(ctx):
            return len(ctx.read_secret())
    ''')
    (tmp_path / "needs_missing.py").write_text(
        body % "no_such_module_for_residue")
    (tmp_path / "needs_json.py").write_text(body % "json")
    present, missing = residue.scenarios(str(tmp_path))   # sorted
    assert missing.name == "needs_missing"
    assert missing.requires == ("no_such_module_for_residue",)
    report = residue.run_matrix([("here", sys.executable)],
                                [missing, present], jobs=2)
    recs = {(r["scenario"], r["mode"]): r for r in report["runs"]}
    for mode in ("control", "protected"):
        assert recs[("needs_missing", mode)]["status"] == "n/a"
        assert recs[("needs_missing", mode)]["missing"] == [
            "no_such_module_for_residue"]
        assert recs[("needs_json", mode)]["status"] == "ok"
    verdicts = {v["scenario"]: v["verdict"] for v in report["verdicts"]}
    assert verdicts["needs_missing"] == \
        "n/a (needs no_such_module_for_residue)"
    assert verdicts["needs_json"] != verdicts["needs_missing"]


def test_a_split_thread_stack_is_labelled_whole():
    """A thread stack the kernel split (parts locked or marked apart) is
    one stack below its SP: the anonymous read-write mappings right below
    the one that holds the SP get its label, down to the guard; a mapping
    above it, or past a gap, does not (it may be another mapping placed
    next to the stack). Control: without the thread's SP no part is a
    thread's stack."""
    K = 4096
    def maps():
        return [residue.Mapping(0x10000, 0x11000, "---p", 0, 0, ""),    # guard
                residue.Mapping(0x11000, 0x20000, "---p", 0, 0, ""),    # below
                residue.Mapping(0x20000, 0x20000 + K, "rw-p", 0, 0, ""),
                residue.Mapping(0x20000 + K, 0x20000 + 3 * K, "rw-p", 0, 0, ""),
                residue.Mapping(0x20000 + 3 * K, 0x30000, "rw-p", 0, 0, ""),
                residue.Mapping(0x31000, 0x32000, "rw-p", 0, 0, ""),    # gap
                residue.Mapping(0x32000, 0x33000, "r--p", 0, 7, "/lib/x.so")]
    sp = 0x20000 + 2 * K
    lab = residue.Labeler(maps(), pid=1, threads={2: ("w", sp)},
                          thread_names={2: "w"})
    labels = [m.label for m in lab.maps]
    assert labels[2:4] == ["stack:thread:w"] * 2, labels
    assert labels[1] != "stack:thread:w", labels
    assert labels[4] == "anon" and labels[5] == "anon", labels
    assert lab.find(0x20010).label == "stack:thread:w"
    control = residue.Labeler(maps(), pid=1, threads={}, thread_names={})
    assert not any(m.label.startswith("stack:thread")
                   for m in control.maps)
    # No guard below (a stack of the thread's own, or not a stack): the
    # mapping under it is not taken; two such stacks keep their names.
    ms = maps()[2:]
    lab = residue.Labeler(ms, pid=1, threads={2: ("w", sp)},
                          thread_names={2: "w"})
    assert [m.label for m in lab.maps][0] == "anon", lab.maps
    lab = residue.Labeler(maps(), pid=1,
                          threads={3: ("a", 0x20010), 2: ("w", sp)},
                          thread_names={2: "w", 3: "a"})
    assert [m.label for m in lab.maps][2:4] == [
        "stack:thread:a", "stack:thread:w"], lab.maps
