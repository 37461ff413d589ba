#!/usr/bin/env bash
# Install what the build needs from Debian's packages, if anything is missing.
# Idempotent and fast when all is there (one dpkg-query). The system's apt
# sources are used as configured.
set -euo pipefail

pkgs=(
  # the driver and the toolchain
  meson ninja-build build-essential pkg-config patch git xz-utils
  # configure regeneration: the autoconf 3.13's configure was made with
  autoconf autoconf-archive
  # CPython's optional modules: ssl, sqlite3, ctypes, zlib, bz2, lzma,
  # readline, curses, uuid, dbm/gdbm, tkinter
  libssl-dev libsqlite3-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev
  libreadline-dev libncurses-dev uuid-dev libgdbm-dev libgdbm-compat-dev
  tk-dev
  # debugging and proof tools; the aarch64 cross build of the erasure
  # assembly, run under qemu-user
  gdb valgrind binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  # allocators users preload (LD_PRELOAD): tests/test_native_heap.py
  # checks that secret.protections() reports them (issue 23)
  libjemalloc2 libtcmalloc-minimal4
  # the TLS residue scenarios' throwaway certificate
  openssl
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed \
    || missing+=("$p")
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "error: missing packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
