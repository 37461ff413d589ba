#!/usr/bin/env bash
# CPython's own regression suite on an installed variant (not part of
# ./run test: it takes ~9 minutes on 2 cores). Compare the experiment with
# pristine: the same tests should fail/skip on both.
#   scripts/cpython-test.sh [experiment|pristine] [regrtest options]
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-experiment}
shift || true
exec "cpython-build/install/$variant/bin/python3" -m test -j2 --timeout 600 "$@"
