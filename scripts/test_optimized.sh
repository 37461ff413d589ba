#!/usr/bin/env bash
# The whole test suite on the experiment built as distributions and
# production services build CPython: profile-guided and link-time
# optimized (`--enable-optimizations --with-lto`). Whole-program
# optimization may inline, clone or reorder across files what the
# ordinary build keeps apart (the stack erasure's frames, the zeroing
# stores, the hooks' thread-local tests); this shows the guarantees hold.
#
#   scripts/test_optimized.sh [PYTEST_ARGS...]
#
# Builds the default variants if needed (the suite also runs pristine,
# fallback and off), then pristine-opt and experiment-opt (about an hour
# on two cores the first time: `ninja -C cpython-build/_meson optimized`),
# a venv from experiment-opt, and runs tests/ on it.
set -euo pipefail
cd "$(dirname "$0")/.."
./run build
ninja -C cpython-build/_meson optimized
venv=cpython-build/venv/experiment-opt
python3 cpython-build/venv.py cpython-build/install/experiment-opt/bin/python3 \
  "$venv" tests/requirements.txt
# As in meson.build's test: glibc must not scribble over freed memory.
exec env RUNTIMESECRET_EXPERIMENT=experiment-opt MALLOC_PERTURB_=0 \
  "$venv/bin/python" -m pytest tests -p no:cacheprovider -ra "$@"
