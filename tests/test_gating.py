"""Build gating (spec §1): pristine vs experiment, configure's option, the
patch series."""

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import (EXPERIMENT, ROOT, UPSTREAM, WORK, interpreter,
                      run_python)

EXPERIMENT_SRC = os.path.join(WORK, "experiment", "src")
SERIES = os.path.join(ROOT, "patches", "series")


def series():
    with open(SERIES) as f:
        names = [line.split("#", 1)[0].strip() for line in f]
    return [os.path.join(ROOT, "patches", n) for n in names if n]


# --- the interpreters -------------------------------------------------------

# "off": the patch series built without --with-experiment (spec §1): what a
# tree carrying our patches builds by default. It must be pristine in
# behaviour and in cost (spec §4), every hook compiled out.

@pytest.mark.parametrize("variant", ["pristine", "off"])
def test_no_secret_and_says_how_to_get_it(variant):
    r = run_python(variant, "import secret", check=False)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), r.stderr
    assert "--with-experiment=runtimesecret" in last


@pytest.mark.parametrize("variant", ["pristine", "off"])
def test_no_experiment_is_configured(variant):
    r = run_python(variant, "\n".join([
        "import sys, sysconfig",
        "print(repr(sysconfig.get_config_var('PY_EXPERIMENTS')))",
        "print(sysconfig.get_config_var('Py_EXPERIMENT_RUNTIMESECRET'))",
        "print('_secret' in sys.builtin_module_names)",
        "print(sys.version.split()[0])",
    ]))
    # pyconfig.h.in of the patched tree has the macro, #undef'd: 0.
    expected = {"pristine": ["None", "None"], "off": ["''", "0"]}[variant]
    assert r.stdout.split() == expected + ["False", "3.13.5"]


def _symbols(variant):
    """Names the interpreter binary defines (libpython is linked in)."""
    binary = os.path.realpath(interpreter(variant))
    out = subprocess.run(["nm", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines()
            if len(line.split()) == 3}


def test_off_build_compiles_every_hook_out():
    # A hook left outside #ifdef Py_EXPERIMENT_RUNTIMESECRET would need the
    # core (_PySecret_*, the secret heap) or add code of its own: either
    # shows as a name pristine does not define.
    secretish = re.compile(r"_PySecret|PyInit__secret|^secret_|_secret_")
    pristine, off = _symbols("pristine"), _symbols("off")
    assert {n for n in off if secretish.search(n)} == set()
    assert off == pristine, (sorted(off - pristine)[:20],
                             sorted(pristine - off)[:20])
    # Control: the same test finds the hooks' names in the experiment.
    found = {n for n in _symbols("experiment") if secretish.search(n)}
    assert {"_PySecretHeap_Free", "_PySecret_tls", "PyInit__secret"} <= found


def test_experiment_config():
    assert sysconfig.get_config_var("PY_EXPERIMENTS") == "runtimesecret"
    assert sysconfig.get_config_var("Py_EXPERIMENT_RUNTIMESECRET") == 1
    assert "_secret" in sys.builtin_module_names
    assert sys.version.split()[0] == "3.13.5"
    pyconfig = os.path.join(sysconfig.get_path("include"), "pyconfig.h")
    with open(pyconfig) as f:
        text = f.read()
    assert "#define Py_EXPERIMENT_RUNTIMESECRET 1" in text
    assert "#define Py_RUNTIMESECRET_SUPPORTED 1" in text


def test_secret_package_is_installed_stdlib():
    import secret
    stdlib = sysconfig.get_path("stdlib")
    assert os.path.dirname(secret.__file__) == os.path.join(stdlib, "secret")


# --- configure --------------------------------------------------------------

def configure(tmp_path, *args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [os.path.join(EXPERIMENT_SRC, "configure"), *args],
        cwd=tmp_path, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("value", ["bogus", "runtimesecret,bogus",
                                   "runtimesecret,,Bogus"])
def test_configure_rejects_unknown_experiment(tmp_path, value):
    r = configure(tmp_path, "--with-experiment=" + value)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    bad = [v for v in value.split(",") if v and v != "runtimesecret"][0]
    assert "unknown experiment '%s'" % bad in err
    assert "known experiments: runtimesecret" in err


def test_configure_with_experiment_needs_a_list(tmp_path):
    r = configure(tmp_path, "--with-experiment")
    assert r.returncode != 0
    assert "known experiments: runtimesecret" in r.stderr


def test_configure_refuses_free_threading(tmp_path):
    r = configure(tmp_path, "--disable-gil", "--with-experiment=runtimesecret")
    assert r.returncode != 0
    assert "not supported yet with --disable-gil" in r.stderr


def test_configure_fallback_cache_variable(tmp_path):
    # ac_cv_secret_supported=no forces the fallback of §6: the experiment is
    # on, but pyconfig.h does not claim erasure.
    r = configure(tmp_path, "--with-experiment=runtimesecret",
                  "ac_cv_secret_supported=no")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert re.search(r"whether runtimesecret erasure supports .*\(cached\) no",
                     r.stdout)
    with open(tmp_path / "pyconfig.h") as f:
        text = f.read()
    assert "#define Py_EXPERIMENT_RUNTIMESECRET 1" in text
    assert "Py_RUNTIMESECRET_SUPPORTED" in text  # the #undef line
    assert "#define Py_RUNTIMESECRET_SUPPORTED" not in text
    with open(tmp_path / "Makefile") as f:
        assert re.search(r"^PY_EXPERIMENTS=\s*runtimesecret$", f.read(), re.M)


def test_configure_is_regenerated_from_configure_ac(tmp_path):
    # The series' configure and pyconfig.h.in are exactly what autoconf 2.71
    # makes of its configure.ac (so the configure diff is our change only).
    for name in ("configure.ac", "aclocal.m4", "install-sh", "config.guess",
                 "config.sub"):
        shutil.copy(os.path.join(EXPERIMENT_SRC, name), tmp_path)
    subprocess.run(["autoconf"], cwd=tmp_path, check=True)
    subprocess.run(["autoheader"], cwd=tmp_path, check=True)
    for name in ("configure", "pyconfig.h.in"):
        with open(tmp_path / name) as a, \
                open(os.path.join(EXPERIMENT_SRC, name)) as b:
            assert a.read() == b.read(), name


# --- the patch series -------------------------------------------------------

def test_series_applies_cleanly_with_patch():
    r = subprocess.run([sys.executable,
                        os.path.join(ROOT, "cpython-build", "patches.py"),
                        "check", UPSTREAM], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok ") == len(series())


def test_series_applies_cleanly_with_git_apply(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(UPSTREAM, tree, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for p in series():
        check = subprocess.run(["git", "apply", "--check", p], cwd=tree,
                               capture_output=True, text=True)
        assert check.returncode == 0, (p, check.stderr)
        subprocess.run(["git", "apply", p], cwd=tree, check=True)


def test_series_failure_names_patch_and_hunk(tmp_path):
    # Apply to a tree whose configure.ac differs where the first patch
    # changes it: the error names the patch and the failed hunk.
    tree = tmp_path / "upstream"
    shutil.copytree(UPSTREAM, tree, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = tree / "configure.ac"
    text = path.read_text()
    path.write_text(text.replace("# Check for --with-pydebug",
                                 "# Check for --with-pydebug (changed)"))
    r = subprocess.run([sys.executable,
                        os.path.join(ROOT, "cpython-build", "patches.py"),
                        "apply", str(tree), str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    first = os.path.basename(series()[0])
    assert "patch %s does not apply" % first in r.stderr
    assert re.search(r"Hunk #\d+ FAILED", r.stderr), r.stderr
    assert "configure.ac" in r.stderr


def test_every_patch_has_a_header():
    assert series(), "empty series"
    for p in series():
        with open(p) as f:
            text = f.read()
        header = text.split("\ndiff --git", 1)[0]
        for field in ("What:", "Why:", "Serves: spec §"):
            assert field in header, (os.path.basename(p), field)


def test_new_files_are_not_carried_in_patches():
    for p in series():
        with open(p) as f:
            assert "\nnew file mode" not in f.read(), os.path.basename(p)


# Issue 22: upstream files reach the runtime through one internal header,
# Include/internal/pycore_secret.h, and only call what it declares: no
# include of a module's header, no write of the runtime's thread-local.
FORBIDDEN_HOOKS = [
    (re.compile(r'#\s*include\s+"[./]*(Modules/)?_secret/'),
     "includes a header of Modules/_secret/"),
    (re.compile(r'#\s*include\s+"pycore_pymem\.h".*_PySecret'),
     "takes the runtime's API from pycore_pymem.h"),
    (re.compile(r"\b_PySecret_tls\b"),
     "reads or writes the runtime's thread-local"),
]


def _added(patch_text):
    """(file, line) of each line the patch adds."""
    path = None
    for line in patch_text.splitlines():
        if line.startswith("+++ b/"):
            path = line[6:]
        elif line.startswith("+") and not line.startswith("+++"):
            yield path, line[1:]


def _forbidden_hooks(patch_text):
    return [(path, why) for path, line in _added(patch_text)
            for pattern, why in FORBIDDEN_HOOKS if pattern.search(line)]


def test_upstream_files_call_the_runtime_through_pycore_secret_h():
    calls, includes = set(), set()
    for p in series():
        with open(p) as f:
            text = f.read()
        assert _forbidden_hooks(text) == [], os.path.basename(p)
        for path, line in _added(text):
            if "_PySecret" in line:
                calls.add(path)
            if re.search(r'#\s*include\s+"pycore_secret\.h"', line):
                includes.add(path)
    # Each C file that calls the runtime includes the header itself (the
    # mimalloc sources are compiled inside obmalloc.c, bytecodes.c is the
    # cases generator's input for ceval.c).
    c_files = {p for p in calls if p.endswith(".c")
               and not p.startswith("Objects/mimalloc/")
               and p != "Python/bytecodes.c"}
    assert c_files and c_files <= includes, sorted(c_files - includes)
    # Control: the same check finds each way around the header.
    bad = ("+++ b/Python/pystate.c\n"
           '+#  include "../Modules/_secret/secret_core.h"\n'
           '+#include "pycore_pymem.h"   // _PySecret_InMode()\n'
           "+        _PySecret_tls.mode++;\n")
    assert len(_forbidden_hooks(bad)) == 3


def test_overlay_never_replaces_an_upstream_file(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "cpython-build"))
    try:
        import patches
    finally:
        sys.path.pop(0)
    upstream = tmp_path / "upstream"
    (upstream / "Python").mkdir(parents=True)
    (upstream / "Python" / "secret_core.c").write_text("upstream's\n")
    with pytest.raises(patches.PatchError, match="would replace upstream"):
        patches.overlay(str(tmp_path / "tree"), str(upstream))
    # Control: without that upstream file the overlay is copied whole, at
    # the paths it has in the repository.
    patches.overlay(str(tmp_path / "tree2"), str(tmp_path / "none"))
    for rel in ("Include/internal/pycore_secret.h", "Python/secret_core.c",
                "Modules/_secret/secretmodule.c", "Lib/secret/__init__.py"):
        assert (tmp_path / "tree2" / rel).is_file(), rel


def _extension_modules(variant):
    d = os.path.join(os.path.dirname(os.path.dirname(interpreter(variant))),
                     "lib", "python3.13", "lib-dynload")
    return {n.split(".")[0] for n in os.listdir(d) if n.endswith(".so")}


def _code(variant):
    """The interpreter's code and data section sizes and its disassembly
    with addresses and constants left out (the builds' line numbers
    differ: __LINE__ in PyErr_BadInternalCall() of the files the patches
    touch). .rodata is left out: it holds __FILE__, the source path, whose
    length differs with the build directory."""
    binary = os.path.realpath(interpreter(variant))
    out = subprocess.run(["size", "-A", binary], check=True,
                         capture_output=True, text=True).stdout
    sizes = {f[0]: f[1] for f in map(str.split, out.splitlines())
             if len(f) == 3 and f[0] in (".text", ".data", ".bss")}
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         check=True, capture_output=True, text=True).stdout
    norm = re.compile(r"^\s*[0-9a-f]+:\s*|0x[0-9a-f]+|\b[0-9a-f]{6,16}\b")
    lines = [norm.sub("", line) for line in dis.splitlines()[2:]]
    return sizes, lines


def test_off_build_runs_pristine_machine_code():
    # Spec §4: the experiment-off build is within noise of pristine. It is
    # pristine: the same sections, the same instructions.
    p_sizes, p_code = _code("pristine")
    o_sizes, o_code = _code("off")
    assert o_sizes == p_sizes
    assert len(o_code) == len(p_code) > 100000
    differ = [i for i, (a, b) in enumerate(zip(p_code, o_code)) if a != b]
    assert differ == [], [(p_code[i], o_code[i]) for i in differ[:10]]
    # Control: the same comparison tells the experiment from pristine.
    e_sizes, e_code = _code("experiment")
    assert e_sizes[".text"] > p_sizes[".text"]
    assert e_code != p_code


@pytest.mark.parametrize(
    "variant", sorted({"experiment", EXPERIMENT, "fallback", "off"}))
def test_every_extension_module_builds_and_imports(variant):
    # A shared module that uses a hook symbol the core does not export
    # still builds, but CPython's build renames it *_failed.so and leaves
    # it out: the patched build must install every module pristine does,
    # and each must import.
    mods = _extension_modules(variant)
    assert mods >= _extension_modules("pristine") - {"_testsecret"}
    build = os.path.join(WORK, variant, "build")
    python = os.path.join(build, "python")
    # Built after the interpreter is linked: a failure of this build is
    # newer than it (an older one is a stale file of an earlier build).
    failed = [n for n in glob.glob(os.path.join(build, "Modules",
                                                "*_failed*"))
              if os.path.getmtime(n) > os.path.getmtime(python)]
    assert not failed
    code = "import importlib, sys\nfor m in sys.argv[1:]: " \
           "importlib.import_module(m)"
    run_python(variant, code, *sorted(mods), timeout=120)
