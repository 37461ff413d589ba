#!/usr/bin/env python3
"""Get the pinned CPython source, verified, into an unpacked tree.

Sources, in order (the first that works wins):
  1. a tarball or an unpacked tree the user names (--source or the
     CPYTHON_SOURCE environment variable); when named, it must verify;
  2. the tarball cached by an earlier run (cpython-build/cache/);
  3. python.org's release URL;
  4. Debian's source archive, through the machine's own apt setup: a private
     apt state directory whose deb-src entry is derived from the Debian mirror
     the machine is configured with (the system's apt state is left alone).
The tarball's SHA-256 is always checked (a tree is checked with a digest of
the release's files, tree_sha256 in pin.json). A failure is one error that
names every source tried and why it failed.

Runs with any Python 3.8+; needs nothing outside the standard library
(apt-get for source 4).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class SourceError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root):
    """Digest of a tree: every regular file and symlink, path and content.

    Independent of timestamps and of how the tree was unpacked, so a tree the
    user names can be checked against the release. __pycache__ is skipped:
    an out-of-tree build writes it into its source tree."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path):
                entries.append("L %s %s" % (rel, os.readlink(path)))
            else:
                entries.append("F %s %s" % (rel, sha256_file(path)))
    entries.sort()
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def verify_tarball(path, pin):
    got = sha256_file(path)
    if got != pin["sha256"]:
        raise SourceError("SHA-256 mismatch: got %s, expected %s"
                          % (got, pin["sha256"]))


def store(path, cache):
    """Copy a verified tarball into the cache, atomically."""
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp = cache + ".part"
    shutil.copyfile(path, tmp)
    os.replace(tmp, cache)


def from_python_org(pin, cache, timeout):
    url = pin["python_org_url"]
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp = cache + ".download"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, \
                open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        verify_tarball(tmp, pin)
        os.replace(tmp, cache)
    except (OSError, ValueError) as e:
        raise SourceError("%s: %s" % (url, e)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- Debian's source archive --------------------------------------------

def apt_source_files():
    """The machine's apt source list files, as apt itself would read them."""
    try:
        out = subprocess.run(["apt-config", "shell",
                              "ETC", "Dir::Etc/d",
                              "LIST", "Dir::Etc::sourcelist/f",
                              "PARTS", "Dir::Etc::sourceparts/d"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SourceError("cannot read apt's configuration: %s" % e)
    conf = dict(re.findall(r"^(\w+)='(.*)'$", out, re.M))
    files = []
    if conf.get("LIST"):
        files.append(conf["LIST"])
    parts = conf.get("PARTS", "")
    if parts and os.path.isdir(parts):
        for name in sorted(os.listdir(parts)):
            if name.endswith((".list", ".sources")):
                files.append(os.path.join(parts, name))
    return [f for f in files if os.path.isfile(f)]


def parse_apt_sources(path):
    """Yield (uri, suites, signed_by) of the deb/deb-src entries of a file in
    one-line (.list) or deb822 (.sources) format."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            key = None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0].isspace() and key:
                    fields[key] += " " + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            types = fields.get("types", "").split()
            if "deb" not in types and "deb-src" not in types:
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split(), \
                    fields.get("signed-by", "")
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^(deb|deb-src)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)",
                         line)
            if not m:
                continue
            opts = m.group(2) or ""
            signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
            yield m.group(3), [m.group(4)], signed.group(1) if signed else ""


def debian_mirrors():
    """Mirrors of Debian's main archive configured on this machine.

    An entry is Debian's archive when it is signed by Debian's archive
    keyring or, without Signed-By, when its URI is a .../debian archive;
    security and other archives are left out."""
    mirrors = []
    for path in apt_source_files():
        for uri, suites, signed_by in parse_apt_sources(path):
            if any(s.endswith("-security") for s in suites):
                continue
            debian_key = "debian-archive-keyring" in signed_by
            debian_uri = uri.rstrip("/").endswith("/debian")
            if not (debian_key or (not signed_by and debian_uri)):
                continue
            keyring = signed_by if signed_by.startswith("/") else ""
            if (uri, keyring) not in mirrors:
                mirrors.append((uri, keyring))
    return mirrors


def upstream_version(debian_version):
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0]


def from_debian(pin, cache, workdir):
    deb = pin["debian"]
    mirrors = debian_mirrors()
    if not mirrors:
        raise SourceError("no Debian mirror found in this machine's apt "
                          "sources (%s)" % ", ".join(apt_source_files()))
    aptdir = os.path.join(workdir, "apt")
    for sub in ("etc/sources.list.d", "etc/preferences.d",
                "state/lists/partial", "cache/archives/partial", "download"):
        os.makedirs(os.path.join(aptdir, sub), exist_ok=True)
    lines = []
    for uri, keyring in mirrors:
        keyring = keyring or (
            DEBIAN_KEYRING if os.path.exists(DEBIAN_KEYRING) else "")
        opts = "[signed-by=%s] " % keyring if keyring else ""
        lines.append("deb-src %s%s %s %s\n"
                     % (opts, uri, deb["suite"], deb["component"]))
    sources = os.path.join(aptdir, "etc/sources.list")
    with open(sources, "w") as f:
        f.writelines(lines)
    # Private lists and cache; the machine's apt.conf.d (proxies, ...) still
    # applies. The system's apt state is not touched.
    opts = ["-o", "Dir::Etc::SourceList=" + sources,
            "-o", "Dir::Etc::SourceParts=" + os.path.join(
                aptdir, "etc/sources.list.d"),
            "-o", "Dir::Etc::Preferences=" + os.path.join(
                aptdir, "etc/preferences"),
            "-o", "Dir::Etc::PreferencesParts=" + os.path.join(
                aptdir, "etc/preferences.d"),
            "-o", "Dir::State=" + os.path.join(aptdir, "state"),
            "-o", "Dir::Cache=" + os.path.join(aptdir, "cache"),
            "-o", "Debug::NoLocking=1"]
    if os.geteuid() == 0:
        # The private directories belong to root, not to the _apt user.
        opts += ["-o", "APT::Sandbox::User=root"]
    where = "deb-src %s %s (%s)" % (deb["suite"], deb["component"],
                                    ", ".join(u for u, _ in mirrors))

    def apt(*args, cwd=None):
        r = subprocess.run(list(args[:1]) + opts + list(args[1:]), cwd=cwd,
                           capture_output=True, text=True)
        if r.returncode != 0:
            err = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])
            raise SourceError("%s: `%s` failed: %s"
                              % (where, " ".join(args), err[-1]))
        return r.stdout

    try:
        apt("apt-get", "-q", "update")
        showsrc = apt("apt-cache", "showsrc", deb["source_package"])
    except OSError as e:
        raise SourceError("%s: %s" % (where, e))
    versions = re.findall(r"^Version:\s*(\S+)", showsrc, re.M)
    wanted = [v for v in versions if upstream_version(v) == pin["version"]]
    if not wanted:
        raise SourceError(
            "%s: source package %s has no version of upstream %s (found: %s)"
            % (where, deb["source_package"], pin["version"],
               ", ".join(versions) or "none"))
    dl = os.path.join(aptdir, "download")
    apt("apt-get", "-q", "source", "--download-only",
        "%s=%s" % (deb["source_package"], wanted[0]), cwd=dl)
    orig = os.path.join(dl, deb["orig_tarball"])
    if not os.path.exists(orig):
        raise SourceError("%s: apt-get source gave no %s"
                          % (where, deb["orig_tarball"]))
    try:
        verify_tarball(orig, pin)
    except SourceError as e:
        raise SourceError("%s: %s %s: %s"
                          % (where, deb["source_package"], wanted[0], e))
    store(orig, cache)


# --- unpacking -------------------------------------------------------------

def unpack_tarball(tarball, dest):
    tmp = dest + ".unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(tarball) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp, filter="data")
        else:
            tf.extractall(tmp)
    (top,) = os.listdir(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(os.path.join(tmp, top), dest)
    os.rmdir(tmp)


def copy_tree(src, dest):
    tmp = dest + ".unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def _main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pin", default=os.path.join(HERE, "pin.json"))
    ap.add_argument("--source", default="",
                    help="a CPython tarball or unpacked tree to use "
                         "(default: $CPYTHON_SOURCE)")
    ap.add_argument("--cache", default=os.path.join(HERE, "cache"),
                    help="directory of the cached tarball")
    ap.add_argument("--dest", required=True,
                    help="where to unpack the verified tree")
    ap.add_argument("--stamp", help="file to touch when done")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--print-tree-digest", action="store_true",
                    help="print the digest of --dest after unpacking")
    args = ap.parse_args()
    args.source = args.source or os.environ.get("CPYTHON_SOURCE", "")

    with open(args.pin) as f:
        pin = json.load(f)
    cache = os.path.join(args.cache, pin["tarball"])
    tried = []
    tree = None

    if args.source:
        src = os.path.abspath(os.path.expanduser(args.source))
        label = "the source you named (%s)" % src
        try:
            if os.path.isdir(src):
                if not pin.get("tree_sha256"):
                    raise SourceError("pin.json has no tree_sha256 to check "
                                      "a tree against")
                got = tree_digest(src)
                if got != pin["tree_sha256"]:
                    raise SourceError(
                        "this tree is not the CPython %s release: its digest "
                        "is %s, expected %s (a tree must be unpacked from "
                        "%s, unchanged and unbuilt)"
                        % (pin["version"], got, pin["tree_sha256"],
                           pin["tarball"]))
                tree = src
            elif os.path.isfile(src):
                verify_tarball(src, pin)
                if os.path.abspath(src) != os.path.abspath(cache):
                    store(src, cache)
            else:
                raise SourceError("no such file or directory")
        except SourceError as e:
            # A source the user named is never silently replaced.
            sys.exit("error: cannot use %s: %s" % (label, e))
        print("CPython %s: using %s" % (pin["version"], label))
    else:
        tried.append(("--source / CPYTHON_SOURCE", "not given"))

    if tree is None and not os.path.exists(cache):
        with tempfile.TemporaryDirectory(prefix="cpython-source-") as work:
            for label, get in (
                    ("python.org",
                     lambda: from_python_org(pin, cache, args.timeout)),
                    ("Debian's source archive via apt",
                     lambda: from_debian(pin, cache, work))):
                try:
                    print("CPython %s: fetching from %s ..."
                          % (pin["version"], label), flush=True)
                    get()
                    print("CPython %s: got %s from %s, SHA-256 verified"
                          % (pin["version"], pin["tarball"], label))
                    break
                except SourceError as e:
                    tried.append((label, str(e)))
                    print("  failed: %s" % e, flush=True)
            else:
                msg = ["error: cannot get CPython %s source (%s, SHA-256 %s)."
                       % (pin["version"], pin["tarball"], pin["sha256"]),
                       "Tried:"]
                msg += ["  - %s: %s" % t for t in tried]
                msg.append("Name a tarball or tree with --source or "
                           "CPYTHON_SOURCE=PATH.")
                sys.exit("\n".join(msg))
    elif tree is None:
        try:
            verify_tarball(cache, pin)
        except SourceError as e:
            sys.exit("error: cached %s is corrupt (%s); delete it and run "
                     "again" % (cache, e))
        if not args.source:
            print("CPython %s: the cached %s, SHA-256 verified"
                  % (pin["version"], pin["tarball"]))

    dest = os.path.abspath(args.dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if tree is not None:
        copy_tree(tree, dest)
    else:
        unpack_tarball(cache, dest)
    if args.print_tree_digest:
        print(tree_digest(dest))
    if args.stamp:
        with open(args.stamp, "w") as f:
            f.write("%s %s\n" % (pin["version"],
                                 tree if tree is not None else cache))


def main():
    """Called by the build (--stamp): one progress line, the details in
    cpython-build/logs/cpython-fetch.log (steplog.py)."""
    if "--stamp" not in sys.argv:
        return _main()
    sys.path.insert(0, HERE)
    import steplog
    with steplog.Step("cpython", "fetch") as step:
        if steplog.verbose():
            return _main()
        real = sys.stdout
        with open(step.log, "a") as log:
            sys.stdout = log
            try:
                _main()
            except SystemExit as e:
                if e.code not in (None, 0):
                    sys.stdout = real
                    step.say(str(e.code))
                    step.fail("cannot get the CPython source")
                raise
            finally:
                sys.stdout = real
        with open(step.log) as f:
            said = [line.strip() for line in f if line.startswith("CPython")]
        step.note = said[-1] if said else ""


if __name__ == "__main__":
    main()
