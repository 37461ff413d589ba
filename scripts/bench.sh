#!/usr/bin/env bash
# Benchmark secret.do()'s cost with pyperf on the experiment interpreter.
#   scripts/bench.sh [OUT.json] [pyperf options, e.g. --fast]
#   scripts/bench.sh heap [OUT.json] [pyperf options]: work in do vs outside
#   scripts/bench.sh exit-gc [OUT.json] [pyperf options]: the exit collection
#     in a process holding 3 million objects
# Makes cpython-build/venv/bench (pyperf, cryptography) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
py=cpython-build/install/experiment/bin/python3
venv=cpython-build/venv/bench
[ -x "$py" ] || { echo "error: run ./run build first" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r scripts/requirements-bench.txt
fi
if [ "${1:-}" = exit-gc ]; then
  shift
  out=${1:-bench-exit-gc.json}
  shift || true
  rm -f "$out"
  "$venv/bin/python" scripts/bench_exit_gc.py -o "$out" "$@"
  exec "$venv/bin/python" scripts/bench_report.py "$out"
fi
if [ "${1:-}" = heap ]; then
  shift
  out=${1:-bench-heap-inside.json}
  shift || true
  rm -f "$out"
  exec "$venv/bin/python" scripts/bench_heap_inside.py -o "$out" "$@"
fi
out=${1:-bench-do.json}
shift || true
rm -f "$out"
"$venv/bin/python" scripts/bench_do.py -o "$out" "$@"
"$venv/bin/python" scripts/bench_report.py "$out"
