#!/usr/bin/env bash
# The whole test suite on the experiment built with AddressSanitizer and
# UndefinedBehaviorSanitizer (`--with-address-sanitizer
# --with-undefined-behavior-sanitizer`; the experiment-sanitizer variant,
# `ninja -C cpython-build/_meson sanitizer`, about 40 minutes on two cores
# the first time). The suite's children run on it too (the pristine,
# fallback and off interpreters stay the ordinary builds), CPython's own
# tests of the modules the patches touch among them
# (tests/test_cpython_tests_in_do.py). docs/sanitizers.md: the result and
# how the secret heap and the stack tracker coexist with ASan.
#
#   scripts/test_sanitizer.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
./run build
ninja -C cpython-build/_meson sanitizer
# detect_leaks=0: CPython frees little at exit, on purpose.
# handle_segv=0: the stack tracker's SIGSEGV handler must see the faults in
# a thread's stack reserve (ASan would report them as crashes); genuine
# crashes still end the process. use_sigaltstack=0: ASan would give every
# thread an alternate signal stack, so no signal frame would land on a
# thread's stack, which the tests' controls look for (do() erases the used
# part of ASan's altstack too: tests/test_erasure.py's alternate-stack
# case). allocator_may_return_null=1: tests ask for impossible sizes
# (bytearray(1 << 62)) and expect MemoryError, as CPython's own tests do.
# UBSan stops at the first report.
export ASAN_OPTIONS=detect_leaks=0:handle_segv=0:use_sigaltstack=0:allocator_may_return_null=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
venv=cpython-build/venv/experiment-sanitizer
python3 cpython-build/venv.py \
  cpython-build/install/experiment-sanitizer/bin/python3 "$venv" \
  tests/requirements.txt
exec env RUNTIMESECRET_EXPERIMENT=experiment-sanitizer MALLOC_PERTURB_=0 \
  "$venv/bin/python" -m pytest tests -p no:cacheprovider -ra "$@"
