"""The erasure assembly on its own: this machine's, and aarch64's in a cross
build run under qemu-user (spec §3.1/§3.2 on both supported platforms)."""

import os
import platform
import shutil
import subprocess

import pytest

from conftest import ROOT

SRC = os.path.join(ROOT, "tests", "native", "erase_check.c")
ASM = {"x86_64": os.path.join(ROOT, "Python", "secret_amd64.S"),
       "aarch64": os.path.join(ROOT, "Python", "secret_arm64.S")}


def pattern():
    p = os.urandom(8).replace(b"\0", b"\1")
    return p.hex()


def build(tmp_path, cc, arch, *flags):
    exe = str(tmp_path / ("erase_check_" + arch))
    subprocess.run([cc, "-O2", *flags, SRC, ASM[arch], "-o", exe],
                   check=True)
    return exe


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 host")
def test_amd64_assembly(tmp_path):
    exe = build(tmp_path, "gcc", "x86_64")
    r = subprocess.run([exe, pattern()], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ok "), r.stdout


@pytest.mark.parametrize("cpu, vector", [(None, "0"), ("max", "1")])
def test_arm64_assembly_under_qemu(tmp_path, cpu, vector):
    # cpu=max has SVE: the predicate registers and FFR are erased too.
    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64")
    assert cc and qemu, "cpython-build/deps.sh installs the cross tools"
    exe = build(tmp_path, cc, "aarch64", "-static")
    cmd = [qemu] + (["-cpu", cpu] if cpu else []) + [exe, pattern(), vector]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok "), r.stdout
