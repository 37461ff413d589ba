#!/usr/bin/env python3
"""Make the release files under dist/ (`./run dist`).

  dist.py [--out DIR] [--source TARBALL_OR_TREE] [--xz-preset N]

Writes:
  Python-3.13.5+runtimesecret.tar.xz   upstream 3.13.5 with the series
                                       applied and our files copied in,
                                       exactly the tree the build compiles
                                       (patches.py apply_series)
  runtimesecret-3.13.5.patch           the same change as one patch against
                                       upstream 3.13.5 (patch -p1), new
                                       files included
  python-build/3.13.5-secret           a python-build (pyenv) definition;
  python-build/patches/3.13.5-secret/Python-3.13.5/runtimesecret.patch
                                       its patch, where python-build looks
  SHA256SUMS                           of all of the above (sha256sum -c)

The patches carry their configure changes (configure is regenerated with
autoconf 2.71 when a patch changes configure.ac), so neither the tarball nor
the patch needs autoconf. The tarball is reproducible: entries sorted, owner
root, files unchanged from upstream keep upstream's mtime, every file the
series changes or adds gets the commit time of HEAD (later than upstream's,
so make never sees a patched file older than its upstream neighbours).
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import patches  # noqa: E402

DEFINITION = "3.13.5-secret"
CONFIGURE_OPTION = "--with-experiment=runtimesecret"


def pin():
    with open(os.path.join(HERE, "pin.json")) as f:
        return json.load(f)


def names(p):
    base = "Python-%s" % p["version"]
    return {
        "base": base,
        "release": base + "+runtimesecret",
        "tarball": base + "+runtimesecret.tar.xz",
        "patch": "runtimesecret-%s.patch" % p["version"],
    }


def head_time():
    r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        return int(r.stdout.strip())
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None


def describe():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty",
                        "--tags"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def subjects():
    """The series' subject lines, for the combined patch's header."""
    out = []
    for path in patches.series():
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n\n", 1)[0].splitlines()
        subj, on = [], False
        for line in lines:
            if line.startswith("Subject:"):
                subj.append(line[len("Subject:"):].replace("[PATCH]", "")
                            .strip())
                on = True
            elif on and line.startswith(" "):
                subj.append(line.strip())
            else:
                on = False
        out.append("%s  %s" % (os.path.basename(path)[:4], " ".join(subj)))
    return out


def get_upstream(tmp, source):
    """The verified upstream tree (source.py: named source, cache, ...)."""
    dest = os.path.join(tmp, "upstream")
    cmd = [sys.executable, os.path.join(HERE, "source.py"), "--dest", dest]
    if source:
        cmd += ["--source", source]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stdout + r.stderr)
    return dest


def combined_patch(upstream, tree, tmp, p):
    """git diff of upstream against the patched tree, paths a/X b/X."""
    work = os.path.join(tmp, "diff")
    os.makedirs(work)
    os.symlink(upstream, os.path.join(work, "a"))
    os.symlink(tree, os.path.join(work, "b"))
    # a/ and b/ are the two trees, so --no-prefix gives a/PATH b/PATH, the
    # form `patch -p1` and python-build (which picks -p1 from it) expect.
    r = subprocess.run(
        ["git", "-c", "core.quotepath=off", "diff", "--no-index",
         "--no-prefix", "--no-renames", "--no-color", "--full-index",
         "a/", "b/"],
        cwd=work, capture_output=True)
    if r.returncode not in (0, 1):
        sys.exit("git diff failed: %s" % r.stderr.decode(errors="replace"))
    body = r.stdout.decode("utf-8")
    if "GIT binary patch" in body or "\nBinary files " in body:
        sys.exit("error: the change has a binary file, which patch -p1 "
                 "cannot apply")
    head = [
        "runtimesecret for CPython %s: the patch series and the new files "
        "as one patch" % p["version"],
        "(from runtimesecret %s)." % describe(),
        "",
        "Apply to the CPython %s release (%s, SHA-256 %s):"
        % (p["version"], p["tarball"], p["sha256"]),
        "    cd Python-%s && patch -p1 < %s" % (p["version"],
                                                 names(p)["patch"]),
        "then build with: ./configure %s && make && make install"
        % CONFIGURE_OPTION,
        "",
        "The series, in order (each patch says what, why and which "
        "guarantee it serves):",
    ] + ["    " + s for s in subjects()] + [
        "and the new files under Include/internal/, Lib/secret/, "
        "Modules/_secret/, Python/.",
        "",
    ]
    return "\n".join(head) + "\n" + body


def write_tarball(upstream, tree, out, top, mtime, preset=6):
    """A reproducible tar.xz of tree, entries under top/."""
    def entries():
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            rel = os.path.relpath(dirpath, tree)
            yield rel, True
            for n in sorted(filenames):
                yield os.path.normpath(os.path.join(rel, n)), False

    tmp = out + ".part"
    with tarfile.open(tmp, "w:xz", format=tarfile.PAX_FORMAT,
                      preset=preset) as tf:
        for rel, is_dir in entries():
            path = os.path.join(tree, rel)
            name = top if rel == "." else top + "/" + rel
            info = tf.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            up = os.path.join(upstream, rel)
            same = False
            if info.isreg() and os.path.isfile(up) \
                    and not os.path.islink(up):
                same = patches_same(path, up)
            elif is_dir or info.issym():
                same = os.path.lexists(up)
            if same:
                info.mtime = int(os.lstat(up).st_mtime)
            elif mtime:
                info.mtime = mtime
            info.mode = (0o755 if is_dir or info.mode & 0o100 else 0o644) \
                if not info.issym() else info.mode
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    os.replace(tmp, out)


def patches_same(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def definition_text(p):
    url = p["python_org_url"]
    return """\
# python-build definition: CPython {v} with the runtimesecret experiment
# (the secret module). Its patch is patches/{d}/Python-{v}/ next to this
# file; python-build applies it to python.org's {v} tarball, checked by
# SHA-256, and configures with {opt}.
# Install: PYTHON_BUILD_DEFINITIONS=/path/to/this/dir pyenv install {d}
package_option python configure {opt}
if declare -F prefer_openssl3 >/dev/null; then
  prefer_openssl3
fi
export PYTHON_BUILD_CONFIGURE_WITH_OPENSSL=1
export PYTHON_BUILD_TCLTK_USE_PKGCONFIG=1
install_package "openssl-3.5.1" "https://github.com/openssl/openssl/releases/download/openssl-3.5.1/openssl-3.5.1.tar.gz#529043b15cffa5f36077a4d0af83f3de399807181d607441d734196d889b641f" mac_openssl --if has_broken_mac_openssl
install_package "readline-8.2" "https://ftpmirror.gnu.org/readline/readline-8.2.tar.gz#3feb7171f16a84ee82ca18a36d7b9be109a52c04f492a053331d7d1095007c35" mac_readline --if has_broken_mac_readline
install_package "Python-{v}" "{url}#{sha}" standard verify_py313 copy_python_gdb ensurepip
""".format(v=p["version"], d=DEFINITION, opt=CONFIGURE_OPTION, url=url,
           sha=p["sha256"])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--source", default="",
                    help="the CPython tarball or tree (default: as the "
                         "build: $CPYTHON_SOURCE, the cache, ...)")
    ap.add_argument("--xz-preset", type=int, default=6,
                    help="xz compression level, 0-9 (default 6, as xz; "
                         "the release check in the tests uses 0: faster)")
    a = ap.parse_args()
    p = pin()
    n = names(p)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dist-") as tmp:
        upstream = get_upstream(tmp, a.source)
        tree = os.path.join(tmp, n["release"])
        patches.apply_series(upstream, tree)
        print("dist: %d patches and %d new files applied to CPython %s"
              % (len(patches.series()), len(patches.overlay_files()),
                 p["version"]), flush=True)

        text = combined_patch(upstream, tree, tmp, p)
        patch_path = os.path.join(out, n["patch"])
        with open(patch_path, "w", encoding="utf-8") as f:
            f.write(text)

        pb = os.path.join(out, "python-build")
        shutil.rmtree(pb, ignore_errors=True)
        pdir = os.path.join(pb, "patches", DEFINITION, n["base"])
        os.makedirs(pdir)
        shutil.copyfile(patch_path, os.path.join(pdir, "runtimesecret.patch"))
        with open(os.path.join(pb, DEFINITION), "w") as f:
            f.write(definition_text(p))

        tar_path = os.path.join(out, n["tarball"])
        write_tarball(upstream, tree, tar_path, n["release"], head_time(),
                      a.xz_preset)

    files = [n["tarball"], n["patch"], "python-build/" + DEFINITION,
             "python-build/patches/%s/%s/runtimesecret.patch"
             % (DEFINITION, n["base"])]
    with open(os.path.join(out, "SHA256SUMS"), "w") as f:
        for rel in files:
            f.write("%s  %s\n" % (sha256(os.path.join(out, rel)), rel))
    for rel in files + ["SHA256SUMS"]:
        print("  %s/%s (%d bytes)" % (os.path.relpath(out), rel,
                                      os.path.getsize(os.path.join(out, rel))))


if __name__ == "__main__":
    main()
