#!/usr/bin/env python3
"""Build and install one interpreter variant (called by meson.build).

  variant.py NAME --upstream DIR --workdir DIR --prefix DIR
             [--patched] [--depfile F] [--stamp F] [-- CONFIGURE_ARGS...]

A patched variant's source tree is work/NAME/src: the upstream tree with the
series applied and the overlay copied in. It is staged afresh each time and
synced into src file by file, so only files whose content changed get a new
mtime and `make` rebuilds only what depends on them. An unpatched variant
builds straight from the upstream tree. Builds are out of tree
(work/NAME/build); configure runs again only when its arguments or the
configure script changed.
"""

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patches  # noqa: E402
from steplog import Step  # noqa: E402


def sync_tree(stage, dest):
    """Make dest a copy of stage, touching only files that differ."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(stage):
        rel = os.path.relpath(dirpath, stage)
        ddir = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(ddir, exist_ok=True)
        for name in filenames:
            s = os.path.join(dirpath, name)
            d = os.path.join(ddir, name)
            if os.path.islink(s):
                target = os.readlink(s)
                if not (os.path.islink(d) and os.readlink(d) == target):
                    if os.path.lexists(d):
                        os.unlink(d)
                    os.symlink(target, d)
                    changed += 1
            elif (os.path.islink(d) or not os.path.isfile(d)
                  or not filecmp.cmp(s, d, shallow=False)):
                if os.path.lexists(d):
                    os.unlink(d)
                shutil.copy2(s, d)
                os.utime(d)  # newer than every build output
                changed += 1
    # Remove what the stage no longer has (but not __pycache__, which the
    # build writes into the source tree).
    for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
        if "__pycache__" in dirpath.split(os.sep):
            continue
        rel = os.path.relpath(dirpath, dest)
        sdir = os.path.normpath(os.path.join(stage, rel))
        for name in filenames:
            if not os.path.lexists(os.path.join(sdir, name)):
                os.unlink(os.path.join(dirpath, name))
                changed += 1
        if not os.path.isdir(sdir):
            shutil.rmtree(dirpath, ignore_errors=True)
    return changed


def prepare_source(upstream, workdir, label):
    src = os.path.join(workdir, "src")
    with Step(label, "patch") as step:
        with tempfile.TemporaryDirectory(prefix="stage-", dir=workdir) as tmp:
            stage = os.path.join(tmp, "tree")
            try:
                patches.apply_series(upstream, stage, log=step.say)
            except patches.PatchError as e:
                step.say(str(e))
                step.fail("the series does not apply")
            changed = sync_tree(stage, src)
        step.note = "%d files changed" % changed
        step.say("source: %s (%d files changed)" % (src, changed))
    return src, changed


def configure_if_needed(src, build, prefix, args, label):
    os.makedirs(build, exist_ok=True)
    want = {"src": src, "prefix": prefix, "args": args,
            "configure": os.path.getmtime(os.path.join(src, "configure"))}
    record = os.path.join(build, "variant-configure.json")
    have = None
    if os.path.exists(record) and os.path.exists(
            os.path.join(build, "Makefile")):
        with open(record) as f:
            have = json.load(f)
    if have == want:
        return False
    with Step(label, "configure") as step:
        step.run([os.path.join(src, "configure"), "--prefix=" + prefix]
                 + args, build)
    with open(record, "w") as f:
        json.dump(want, f)
    return True


def write_depfile(depfile, stamp, files):
    def esc(p):
        return p.replace("\\", "\\\\").replace(" ", "\\ ").replace("$", "$$")
    with open(depfile, "w") as f:
        f.write("%s: %s\n"
                % (esc(stamp), " \\\n ".join(esc(p) for p in files)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--patched", action="store_true")
    ap.add_argument("--depfile")
    ap.add_argument("--stamp")
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    a = ap.parse_args(argv)
    a.configure_args = extra
    if "--with-address-sanitizer" in extra:
        # The build runs the interpreter it builds (freezing modules,
        # checking extensions): CPython frees little at exit, on purpose,
        # which LeakSanitizer would stop the build for.
        os.environ["ASAN_OPTIONS"] = "detect_leaks=0"

    upstream = os.path.abspath(a.upstream)
    workdir = os.path.abspath(os.path.join(a.workdir, a.name))
    prefix = os.path.abspath(a.prefix)
    os.makedirs(workdir, exist_ok=True)
    changed = 0
    if a.patched:
        src, changed = prepare_source(upstream, workdir, a.name)
    else:
        src = upstream
    build = os.path.join(workdir, "build")
    changed += configure_if_needed(src, build, prefix, a.configure_args,
                                   a.name)
    stamp = os.path.join(build, "profile-run-stamp")
    if changed and "--enable-optimizations" in a.configure_args \
            and os.path.exists(stamp):
        # CPython's PGO build never reruns its training on its own: a
        # changed file would be rebuilt against the old profile, and GCC
        # stops on a function whose profile no longer matches
        # (-Werror=coverage-mismatch). Removing the stamp reruns the whole
        # cycle (Makefile.pre.in: "To force re-running of the profile
        # task, remove the profile-run-stamp file").
        print("sources changed: the profile is made again", flush=True)
        os.remove(stamp)
    with Step(a.name, "make") as step:
        step.run(["make", "-j%d" % (os.cpu_count() or 2)], build)
    with Step(a.name, "install") as step:
        step.run(["make", "install"], build)

    if a.depfile and a.stamp:
        files, dirs = patches.input_files() if a.patched else ([], [])
        write_depfile(a.depfile, a.stamp, files + dirs)
    if a.stamp:
        with open(a.stamp, "w") as f:
            f.write(prefix + "\n")
    if os.environ.get("VERBOSE", "") not in ("", "0"):
        print("installed %s: %s/bin/python3" % (a.name, prefix))


if __name__ == "__main__":
    main()
