"""The release is complete: `./run dist`'s files unpack, configure offers the
experiment, the one-file patch gives exactly the tarball's tree on the pinned
upstream, the python-build definition names the pinned tarball and the
option, and `patches.py check` says which patch no longer applies to a
changed upstream (what a user moving to a later 3.13.x runs).

Fast (well under a minute): the tarball is compressed with xz -0 here; the
builds of the release are scripts/test_release.sh (on demand)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import BUILD, UPSTREAM

sys.path.insert(0, BUILD)
import patches  # noqa: E402
import source  # noqa: E402

with open(os.path.join(BUILD, "pin.json")) as f:
    PIN = json.load(f)
VERSION = PIN["version"]
TARBALL = "Python-%s+runtimesecret.tar.xz" % VERSION
TOP = "Python-%s+runtimesecret" % VERSION
PATCH = "runtimesecret-%s.patch" % VERSION
CACHED = os.path.join(BUILD, "cache", PIN["tarball"])


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if not os.path.exists(CACHED):
        pytest.skip("no verified CPython tarball in cpython-build/cache "
                    "(./run build fetches it): dist cannot be made")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, os.path.join(BUILD, "dist.py"),
                        "--out", str(out), "--source", CACHED,
                        "--xz-preset", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def unpacked(dist, tmp_path_factory):
    dest = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(dist / TARBALL) as tf:
        names = tf.getnames()
        assert {n.split("/", 1)[0] for n in names} == {TOP}
        for m in tf.getmembers():
            assert m.uid == 0 and m.gid == 0, m.name
            assert "__pycache__" not in m.name.split("/"), m.name
        tf.extractall(dest, filter="data")
    return dest / TOP


def test_sha256sums(dist):
    lines = (dist / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) == {
        TARBALL, PATCH, "python-build/3.13.5-secret",
        "python-build/patches/3.13.5-secret/Python-%s/runtimesecret.patch"
        % VERSION}
    for name, digest in listed.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() \
            == digest, name


def test_tarball_has_our_files_and_configure_offers_the_experiment(unpacked):
    for rel in ("Lib/secret/__init__.py", "Modules/_secret/secretmodule.c",
                "Python/secret_core.c", "Include/internal/pycore_secret.h"):
        assert (unpacked / rel).is_file(), rel
    r = subprocess.run(["sh", "./configure", "--help"], cwd=unpacked,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+--with-experiment=", r.stdout, re.M), r.stdout
    # Control: upstream's configure has no such option.
    up = subprocess.run(["sh", "./configure", "--help"], cwd=UPSTREAM,
                        capture_output=True, text=True)
    assert up.returncode == 0
    assert "--with-experiment" not in up.stdout


def test_patch_gives_the_tarballs_tree(dist, unpacked, tmp_path):
    """patch -p1 on the pinned upstream tree gives, file for file, the
    tarball's tree (and the tree the build compiles: both come from
    patches.apply_series)."""
    assert source.tree_digest(UPSTREAM) == PIN["tree_sha256"]
    tree = tmp_path / ("Python-%s" % VERSION)
    shutil.copytree(UPSTREAM, tree, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = source.tree_digest(str(tree))
    assert before != source.tree_digest(str(unpacked))   # control
    r = subprocess.run(["patch", "-p1", "--fuzz=0", "--batch", "-s",
                        "-i", str(dist / PATCH)], cwd=tree,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert source.tree_digest(str(tree)) == source.tree_digest(str(unpacked))


def test_python_build_definition(dist):
    d = dist / "python-build"
    text = (d / "3.13.5-secret").read_text()
    assert "package_option python configure --with-experiment=runtimesecret" \
        in text
    m = re.search(r'install_package "Python-%s" "([^"#]+)#([0-9a-f]{64})"'
                  % re.escape(VERSION), text)
    assert m and m.group(1) == PIN["python_org_url"] \
        and m.group(2) == PIN["sha256"], text
    assert subprocess.run(["bash", "-n", str(d / "3.13.5-secret")]).returncode \
        == 0
    # python-build looks for patches/<definition>/<package>/ next to the
    # definition and applies every file in it with patch -p1 when the
    # first line says `diff --git a/`.
    pdir = d / "patches" / "3.13.5-secret" / ("Python-%s" % VERSION)
    assert os.listdir(pdir) == ["runtimesecret.patch"]
    assert (pdir / "runtimesecret.patch").read_bytes() \
        == (dist / PATCH).read_bytes()
    assert re.search(rb"^diff --git a/", (dist / PATCH).read_bytes(), re.M)


def test_check_names_the_patch_that_no_longer_applies(tmp_path):
    """What a user moving to a later 3.13.x runs: each patch is reported.
    Here upstream is changed where the pydoc patch applies."""
    patches_py = os.path.join(BUILD, "patches.py")
    ok = subprocess.run([sys.executable, patches_py, "check", UPSTREAM],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "FAILED" not in ok.stdout
    changed = tmp_path / "later"
    shutil.copytree(UPSTREAM, changed, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    pydoc = changed / "Lib" / "pydoc.py"
    text = pydoc.read_text()
    assert "'test.test_pydoc.pydoc_mod')" in text
    pydoc.write_text(text.replace("'test.test_pydoc.pydoc_mod')",
                                  "'test.test_pydoc.other_mod')"))
    r = subprocess.run([sys.executable, patches_py, "check", str(changed)],
                       capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    failed = re.findall(r"^FAILED\s+patches/(\S+)", r.stdout, re.M)
    assert len(failed) == 1 and "pydoc" in failed[0], r.stdout
    assert len(re.findall(r"^ok\s", r.stdout, re.M)) \
        == len(patches.series()) - 1, r.stdout
