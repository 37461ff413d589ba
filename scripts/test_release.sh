#!/usr/bin/env bash
# The release, built the ways a user builds it (on demand, not in CI: two
# CPython builds, about 40 minutes on 2 shared cores; see docs/build.md).
#
#   scripts/test_release.sh [tarball|pyenv]...    (default: both)
#
# First `./run dist`, and `sha256sum -c` on what it wrote. Then:
#   tarball  the release tarball unpacked and built out of tree as
#            distributions build it: ../configure --with-experiment=
#            runtimesecret --enable-shared --prefix=TMP; the erasure, heap
#            and API tests run on that interpreter (LD_LIBRARY_PATH=TMP/lib).
#   pyenv    `pyenv install 3.13.5-secret` from the python-build definition,
#            into a temporary PYENV_ROOT, offline (no network namespace
#            access when `unshare -n` works; python-build takes the upstream
#            tarball from PYTHON_BUILD_CACHE_PATH, checked by SHA-256);
#            secret.do must erase there.
# Each step's output goes to a log under the temporary directory (kept on
# failure, printed path); one line per step on the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(tarball pyenv)
jobs=${JOBS:-2}
tmp=$(mktemp -d /tmp/release-test.XXXXXX)
echo "release test: $tmp" >&2
keep=${KEEP:-0}   # KEEP=1: keep the temporary directory
trap '[ $keep = 1 ] || rm -rf "$tmp"' EXIT
version=$(python3 -c 'import json; print(json.load(open("cpython-build/pin.json"))["version"])')
upstream_tarball=cpython-build/cache/Python-$version.tar.xz

step() {  # step NAME CMD...: run CMD, its output to $tmp/NAME.log
  local name=$1; shift
  local t0=$SECONDS
  printf '%-28s ' "$name" >&2
  if "$@" >"$tmp/$name.log" 2>&1; then
    printf 'ok   %4ds\n' $((SECONDS - t0)) >&2
  else
    printf 'FAILED after %ds\n' $((SECONDS - t0)) >&2
    tail -n 30 "$tmp/$name.log" >&2
    echo "full log: $tmp/$name.log" >&2
    keep=1
    exit 1
  fi
}

step dist ./run dist
step sha256sum-c bash -c 'cd dist && sha256sum -c SHA256SUMS'
[ -f "$upstream_tarball" ] || { echo "no $upstream_tarball" >&2; exit 1; }

check_do='
import os, secret, sysconfig
assert sysconfig.get_config_var("PY_EXPERIMENTS") == "runtimesecret"
assert secret.supported()
s = os.urandom(16)
assert secret.do(lambda k: bytes(reversed(k)), s) == bytes(reversed(s))
p = secret.protections()
assert p["registers"] and p["c_stack"] and p["heap"], p
print(sysconfig.get_config_var("CONFIG_ARGS"))
print(p)
'

# Exec argv[1:] with SIGINT at its default disposition.
default_sigint='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])'

for w in "${what[@]}"; do
  case "$w" in
  tarball)
    prefix=$tmp/tarball/prefix
    mkdir -p "$tmp/tarball/build"
    step tarball-unpack tar xJf "dist/Python-$version+runtimesecret.tar.xz" \
      -C "$tmp/tarball"
    cd "$tmp/tarball/build"
    step tarball-configure "../Python-$version+runtimesecret/configure" \
      --with-experiment=runtimesecret --enable-shared --prefix="$prefix"
    step tarball-make make -j"$jobs"
    step tarball-install make install
    cd "$root"
    export LD_LIBRARY_PATH=$prefix/lib
    step tarball-secret.do "$prefix/bin/python3" -c "$check_do"
    cat "$tmp/tarball-secret.do.log" >&2
    step tarball-venv "$prefix/bin/python3" -m venv "$tmp/tarball/venv"
    step tarball-pip "$tmp/tarball/venv/bin/python" -m pip install -q \
      -r tests/requirements.txt
    # The erasure, heap and API tests, on the release's interpreter. SIGINT
    # back to its default first: a shell started in the background (`&`,
    # nohup) ignores it, Python then installs no handler, and the tests
    # that raise KeyboardInterrupt with a real SIGINT would see none.
    step tarball-tests env MALLOC_PERTURB_=0 RUNTIMESECRET_PREFIX="$prefix" \
      "$tmp/tarball/venv/bin/python" -c "$default_sigint" \
      "$tmp/tarball/venv/bin/python" -m pytest -p no:cacheprovider -q \
      tests/test_erasure.py tests/test_heap.py tests/test_api.py
    tail -n 1 "$tmp/tarball-tests.log" >&2
    unset LD_LIBRARY_PATH
    ;;
  pyenv)
    command -v pyenv >/dev/null || { echo "pyenv not found" >&2; exit 1; }
    mkdir -p "$tmp/pyenv/root" "$tmp/pyenv/cache"
    cp "$upstream_tarball" "$tmp/pyenv/cache/"
    offline=()
    if unshare -n true 2>/dev/null; then
      offline=(unshare -n)   # no network at all
    fi
    step pyenv-install env PYENV_ROOT="$tmp/pyenv/root" \
      PYTHON_BUILD_DEFINITIONS="$root/dist/python-build" \
      PYTHON_BUILD_CACHE_PATH="$tmp/pyenv/cache" \
      PYTHON_BUILD_MIRROR_URL=http://127.0.0.1:9/ \
      MAKE_OPTS="-j$jobs" "${offline[@]}" pyenv install -v 3.13.5-secret
    step pyenv-secret.do env PYENV_ROOT="$tmp/pyenv/root" \
      PYENV_VERSION=3.13.5-secret pyenv exec python -c "$check_do"
    cat "$tmp/pyenv-secret.do.log" >&2
    ;;
  *) echo "usage: $0 [tarball|pyenv]..." >&2; exit 2 ;;
  esac
done
echo "release: all checks passed (${SECONDS}s)" >&2
