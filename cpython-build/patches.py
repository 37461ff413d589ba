#!/usr/bin/env python3
"""The patch series: apply it to an upstream tree, check it, edit it.

  patches.py apply UPSTREAM DEST     copy UPSTREAM to DEST, apply the series
  patches.py check UPSTREAM [--sha256 HEX]
                                     does each patch apply? UPSTREAM is a
                                     tree or a tarball (then with its
                                     SHA-256): e.g. a later 3.13.x
  patches.py devtree UPSTREAM DEST   a git work tree: upstream + one commit per
                                     patch (+ the overlay, untracked), to edit
  patches.py export DEST             write DEST's commits back as the series

The series is patches/series: one file name per line, in order, '#' starts a
comment. Each patch is `git format-patch` output, so its commit message is
the header (what, why, which spec section) and both `patch` and `git apply`
accept it. A patch applies with no fuzz; a failure names the patch and hunk.
Our new files are not in patches: they live in this repository at the
paths they have in the CPython tree (Include/internal/, Lib/secret/,
Modules/_secret/, Python/) and are copied in by the build (see OVERLAY).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHES = os.path.join(ROOT, "patches")
SERIES = os.path.join(PATCHES, "series")
# Repository directories that mirror CPython's tree: every file under them
# is copied into the CPython tree at the same path (the overlay). An overlay
# file never replaces an upstream one: upstream files change only through
# the series.
OVERLAY = ["Include", "Lib", "Modules", "Python"]
AUTHOR = ["-c", "user.name=runtimesecret", "-c",
          "user.email=runtimesecret@localhost"]


class PatchError(Exception):
    pass


def series():
    names = []
    with open(SERIES) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
    return [os.path.join(PATCHES, n) for n in names]


def _walk_overlay():
    for d in OVERLAY:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, d)):
            dirnames[:] = sorted(n for n in dirnames if n != "__pycache__")
            yield dirpath, sorted(filenames)


def overlay_files():
    """The overlay's files, as paths relative to the tree's top."""
    return [os.path.relpath(os.path.join(dirpath, n), ROOT)
            for dirpath, filenames in _walk_overlay() for n in filenames]


def input_files():
    """Every file the patched tree is made from (for build dependencies)."""
    files = [SERIES] + series()
    dirs = [PATCHES]
    for dirpath, filenames in _walk_overlay():
        dirs.append(dirpath)
        files += [os.path.join(dirpath, n) for n in filenames]
    return files, dirs


def apply_one(patch, tree, dry_run=False):
    cmd = ["patch", "-p1", "--fuzz=0", "--forward", "--batch",
           "--no-backup-if-mismatch", "-r", "-", "-d", tree, "-i", patch]
    if dry_run:
        cmd.append("--dry-run")
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    name = os.path.basename(patch)
    if r.returncode != 0:
        lines = [line for line in out.splitlines()
                 if re.search(r"FAILED|patching file|can't find|malformed|"
                              r"Reversed|not found|Only garbage", line)]
        raise PatchError("patch %s does not apply:\n  %s"
                         % (name, "\n  ".join(lines or out.splitlines())))
    offsets = [line for line in out.splitlines()
               if "offset" in line or "fuzz" in line]
    if offsets:
        # Tolerated by patch, but the series must match upstream exactly.
        raise PatchError("patch %s applies only with offsets; refresh it "
                         "(patches.py devtree + export):\n  %s"
                         % (name, "\n  ".join(offsets)))


def copy_upstream(upstream, dest):
    shutil.copytree(upstream, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))


def overlay(dest, upstream):
    """Copy the overlay into dest (upstream + series)."""
    for rel in overlay_files():
        if os.path.lexists(os.path.join(upstream, rel)):
            raise PatchError("overlay file %s would replace upstream's: "
                             "change it with a patch" % rel)
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), target)


def apply_series(upstream, dest, log=None):
    copy_upstream(upstream, dest)
    for p in series():
        apply_one(p, dest)
        if log:
            log("applied %s" % os.path.basename(p))
    overlay(dest, upstream)
    if log:
        log("copied in %d files: %s" % (len(overlay_files()),
                                        " ".join(overlay_files())))


def check(upstream, sha256=None):
    """Apply the series to a scratch copy of upstream (a tree, or a tarball
    checked against sha256) and say, per patch, whether it applies: "ok"
    (exactly), "offset" (it applies, but at other lines: refresh it before
    building) or "FAILED" (with the hunks that failed; the patch is then
    skipped and the next ones are tried on the tree without it, so a later
    failure may only follow from this one). Then whether our new files
    would replace an upstream file. Returns the number of patches that do
    not apply exactly."""
    bad = 0
    with tempfile.TemporaryDirectory(prefix="series-check-") as tmp:
        tree = os.path.join(tmp, "tree")
        if os.path.isfile(upstream):
            _unpack_checked(upstream, sha256, tree)
        else:
            copy_upstream(upstream, tree)
        for p in series():
            name = os.path.relpath(p, ROOT)
            try:
                apply_one(p, tree, dry_run=True)
            except PatchError as e:
                bad += 1
                offsets = "offsets" in str(e)
                if offsets:
                    # Applies with offsets: apply it for real so the next
                    # patches see the tree they expect.
                    subprocess.run(["patch", "-p1", "--fuzz=0", "--forward",
                                    "--batch", "--no-backup-if-mismatch",
                                    "-r", "-", "-s", "-d", tree, "-i", p],
                                   capture_output=True)
                print("%s  %s\n      %s"
                      % ("offset" if offsets else "FAILED", name,
                         str(e).split("\n", 1)[-1].strip()
                         .replace("\n", "\n      ")))
                continue
            apply_one(p, tree)
            print("ok      %s" % name)
        for rel in overlay_files():
            if os.path.lexists(os.path.join(tree, rel)):
                bad += 1
                print("FAILED  new file %s: this release has one at that "
                      "path" % rel)
    print("%d of %d patches apply exactly%s"
          % (len(series()) - bad, len(series()),
             "" if bad else "; the new files have no upstream namesake"))
    return bad


def _unpack_checked(tarball, sha256, dest):
    import hashlib
    import tarfile
    if not sha256:
        raise PatchError("a tarball needs its SHA-256 (--sha256 HEX, as its "
                         "publisher gives it)")
    h = hashlib.sha256()
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != sha256.lower():
        raise PatchError("%s: SHA-256 %s, expected %s"
                         % (tarball, h.hexdigest(), sha256))
    print("%s: SHA-256 verified" % os.path.basename(tarball))
    unpack = dest + ".unpack"
    os.makedirs(unpack)
    with tarfile.open(tarball) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(unpack, filter="data")
        else:
            tf.extractall(unpack)
    (top,) = os.listdir(unpack)
    os.replace(os.path.join(unpack, top), dest)


def git(tree, *args, **kw):
    return subprocess.run(["git", *AUTHOR, *args], cwd=tree, check=True,
                          **kw)


def devtree(upstream, dest):
    if os.path.exists(dest):
        raise PatchError("%s exists" % dest)
    copy_upstream(upstream, dest)
    git(dest, "init", "-q")
    with open(os.path.join(dest, ".git", "info", "exclude"), "a") as f:
        f.write("__pycache__/\nautom4te.cache/\n*~\n")
        for rel in overlay_files():
            f.write("/%s\n" % rel)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "upstream")
    git(dest, "tag", "upstream")
    git(dest, "am", "-q", "--whitespace=nowarn", *series())
    overlay(dest, upstream)
    print("%s: upstream + %d patches as commits. Edit, commit (one commit "
          "per topic; the message is the header), then:\n"
          "  %s export %s\n"
          "Overlay files (under %s) are copies: edit them in the "
          "repository." % (dest, len(series()), sys.argv[0], dest,
                           ", ".join(d + "/" for d in OVERLAY)))


def export(tree):
    with tempfile.TemporaryDirectory(prefix="series-export-") as tmp:
        git(tree, "format-patch", "-q", "--no-signature", "--zero-commit",
            "--no-stat", "-N", "-o", tmp, "upstream..HEAD")
        names = sorted(os.listdir(tmp))
        for old in series():
            os.unlink(old)
        for n in names:
            shutil.copyfile(os.path.join(tmp, n), os.path.join(PATCHES, n))
    with open(SERIES, "w") as f:
        f.write("# The patch series, applied in this order "
                "(cpython-build/patches.py).\n")
        f.writelines(n + "\n" for n in names)
    print("wrote %d patches and patches/series" % len(names))


def main():
    args = sys.argv[1:]
    try:
        if len(args) == 3 and args[0] == "apply":
            apply_series(args[1], args[2])
        elif len(args) in (2, 4) and args[0] == "check":
            sha = None
            if len(args) == 4:
                if args[2] != "--sha256":
                    sys.exit(__doc__)
                sha = args[3]
            if check(args[1], sha):
                sys.exit(1)
        elif len(args) == 3 and args[0] == "devtree":
            devtree(args[1], args[2])
        elif len(args) == 2 and args[0] == "export":
            export(args[1])
        else:
            sys.exit(__doc__)
    except PatchError as e:
        sys.exit("error: %s" % e)


if __name__ == "__main__":
    main()
