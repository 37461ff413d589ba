#!/usr/bin/env python3
"""Is the experiment-off build pristine's machine code? (spec §1, §4)

  scripts/off_machine_code.py [--variant off] [--against pristine] [-v]

The off build is the patch series configured without --with-experiment:
every hook must compile out. This compares the two builds' object files
(cpython-build/work/VARIANT/build, every *.o: the interpreter's, the
built-in and the shared modules'), then their interpreter binaries:

1. Each object's code with its relocations (`objdump -dr`: the
   instructions, and what each call and address refers to, by name) and
   the contents of its other allocated sections (data, read-only data).
   Equal: the same machine code.
2. An object that differs is compiled again from both trees, each with
   its own build's command (`make -n`), its __LINE__ pinned to 0 and its
   source directory mapped to one name (-ffile-prefix-map): the patches
   add lines to the files they touch, which moves the line numbers that
   PyErr_BadInternalCall() and others pass, and the two trees' paths
   (hence __FILE__) differ in length. These objects must then be equal
   in the same way; anything else is a difference the patches make.
   Control: the experiment build's Objects/obmalloc.o, pinned the same
   way, must differ from the reference's.
3. The linked interpreters: the sizes of .text, .data and .bss, and their
   disassembly with addresses and constants left out (the line numbers
   and string addresses of 2 are constants there).

Prints what it compared and exits 1 if anything differs. Needs the two
builds (`./run build`); about 2 minutes on 2 cores, most of it objdump
and the objects of step 2 (each compiled twice, into a temporary
directory: the build trees are not touched).
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "cpython-build", "work")
INSTALL = os.path.join(ROOT, "cpython-build", "install")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          **kw).stdout


def objects(build):
    found = set()
    for dirpath, dirnames, filenames in os.walk(build):
        dirnames[:] = [d for d in dirnames if d != "build"]
        for n in filenames:
            if n.endswith(".o"):
                found.add(os.path.relpath(os.path.join(dirpath, n), build))
    return found


def alloc_sections(obj):
    """Names of the allocated sections that are not code (code is
    compared disassembled)."""
    names = []
    lines = run(["objdump", "-h", obj]).splitlines()
    for head, flags in zip(lines, lines[1:]):
        f = head.split()
        if (len(f) >= 7 and f[0].isdigit() and "ALLOC" in flags
                and "CODE" not in flags and int(f[2], 16)):
            names.append(f[1])
    return names


def contents(obj):
    """Code with relocations, then the other allocated sections' bytes."""
    code = run(["objdump", "-dr", "--no-show-raw-insn", obj])
    code = code.split("\n", 2)[2]       # after the line naming the file
    data = ""
    for name in alloc_sections(obj):
        dump = run(["objdump", "-s", "-j", name, obj])
        data += dump.split("\n", 2)[2]
    return code + data


def compile_command(build, obj, src):
    """The shell command make runs for obj, as its dry run prints it."""
    out = run(["make", "-n", "-W", src, obj], cwd=build)
    for cmd in out.replace("\\\n", " ").splitlines():
        if re.search(r"(^|\s)-o %s(\s|$)" % re.escape(obj), cmd):
            return cmd
    raise SystemExit("no compile command for %s in %s" % (obj, build))


def source_of(build, obj):
    """The source tree, and the C source make compiles obj from: in the
    source tree, or made in the build tree."""
    with open(os.path.join(build, "Makefile")) as f:
        text = f.read()
    srcdir = re.search(r"^srcdir=\s*(\S+)", text, re.M).group(1)
    prefix = re.search(r"^prefix=\s*(\S+)", text, re.M).group(1)
    for base in (srcdir, build):
        src = os.path.join(base, obj[:-2] + ".c")
        if os.path.exists(src):
            return srcdir, prefix, src
    raise SystemExit("no source for %s" % obj)


def pinned(build, obj, tmp, tag):
    """obj compiled again into tmp, with what differs between two builds
    of one source pinned: __LINE__ (0), the source and build directories
    (__FILE__, debug paths), the installation prefix and source path
    Modules/getpath.c is given, the build's date and time."""
    srcdir, prefix, src = source_of(build, obj)
    cmd = compile_command(build, obj, src)
    out = os.path.join(tmp, tag + "-" + obj.replace("/", "_"))
    cmd = re.sub(r"(^|\s)-o %s(\s|$)" % re.escape(obj),
                 lambda m: "%s-o %s%s" % (m.group(1), shlex.quote(out),
                                          m.group(2)), cmd)
    cmd = cmd.replace(prefix, "/PREFIX")
    cmd = re.sub(r"-DVPATH='\"[^\"]*\"'", "-DVPATH='\"/SRC\"'", cmd)
    cmd += (" -D__LINE__=0 -D__DATE__='\"-\"' -D__TIME__='\"-\"'"
            " -Wno-builtin-macro-redefined"
            " -ffile-prefix-map=%s=/SRC -ffile-prefix-map=%s=/BUILD"
            % (shlex.quote(srcdir), shlex.quote(build)))
    subprocess.run(cmd, shell=True, cwd=build, check=True,
                   capture_output=True)
    return contents(out)


NORM = re.compile(r"^\s*[0-9a-f]+:\s*|0x[0-9a-f]+|\b[0-9a-f]{6,16}\b")


def binary(variant):
    """Section sizes and disassembly, addresses and constants left out,
    of cpython-build/install/VARIANT's interpreter."""
    exe = os.path.realpath(os.path.join(INSTALL, variant, "bin", "python3"))
    sizes = {f[0]: f[1] for f in map(str.split,
                                     run(["size", "-A", exe]).splitlines())
             if len(f) == 3 and f[0] in (".text", ".data", ".bss")}
    dis = run(["objdump", "-d", "--no-show-raw-insn", exe]).splitlines()[2:]
    return sizes, [NORM.sub("", line) for line in dis]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="off")
    ap.add_argument("--against", default="pristine")
    ap.add_argument("--control", default="Objects/obmalloc.o",
                    help="an object the experiment build must differ in, "
                    "pinned the same way (default %(default)s; '' for none)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    builds = [os.path.join(WORK, v, "build") for v in (a.against, a.variant)]
    for b in builds:
        if not os.path.exists(os.path.join(b, "python")):
            sys.exit("error: %s is not built: run ./run build" % b)
    ref, new = builds
    ref_objs, new_objs = objects(ref), objects(new)
    bad = []
    for o in sorted(new_objs - ref_objs):
        bad.append("%s: only in %s" % (o, a.variant))
    for o in sorted(ref_objs - new_objs):
        bad.append("%s: only in %s" % (o, a.against))
    common = sorted(ref_objs & new_objs)
    with ThreadPoolExecutor(2) as ex:
        first = list(ex.map(
            lambda o: contents(os.path.join(ref, o))
            == contents(os.path.join(new, o)), common))
    differ = [o for o, same in zip(common, first) if not same]
    print("objects: %d in %s, %d in %s; %d with the same code and data"
          % (len(ref_objs), a.against, len(new_objs), a.variant,
             len(common) - len(differ)))
    with tempfile.TemporaryDirectory(prefix="off-code-") as tmp:
        def again(o):
            return (pinned(ref, o, tmp, "ref")
                    == pinned(new, o, tmp, "new"))
        with ThreadPoolExecutor(2) as ex:
            second = list(ex.map(again, differ))
    for o, same in zip(differ, second):
        if a.verbose or not same:
            print("  %s: differs; with __LINE__ pinned and the source "
                  "path renamed: %s" % (o, "the same" if same
                                       else "STILL DIFFERS"))
        if not same:
            bad.append("%s: code or data differ" % o)
    print("%d differ only by line numbers and source paths (the same "
          "once both are pinned)" % sum(second))
    # Control: pinned the same way, the experiment's build of a patched
    # file is told from the reference's.
    exp = os.path.join(WORK, "experiment", "build")
    if a.control and os.path.exists(os.path.join(exp, a.control)):
        with tempfile.TemporaryDirectory(prefix="off-code-") as tmp:
            told = (pinned(exp, a.control, tmp, "exp")
                    != pinned(ref, a.control, tmp, "ref"))
        print("control: the experiment's %s, pinned the same way, %s"
              % (a.control, "differs" if told else "DOES NOT DIFFER"))
        if not told:
            bad.append("the control found no difference")
    (rs, rc), (ns, nc) = binary(a.against), binary(a.variant)
    same_bin = rs == ns and rc == nc
    print("interpreters: sizes %s %s, %s; disassembly (%d lines) %s"
          % (a.against, rs, "equal" if rs == ns else "DIFFER: %s" % ns,
             len(rc), "equal but for addresses and constants"
             if rc == nc else "DIFFERS"))
    if not same_bin:
        bad.append("the interpreter binaries differ")
    if bad:
        print("\nDIFFERENT:\n  " + "\n  ".join(bad))
        return 1
    print("\n%s is %s's machine code" % (a.variant, a.against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
