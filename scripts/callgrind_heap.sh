#!/usr/bin/env bash
# Instruction counts (valgrind callgrind) of an allocation-heavy script on
# the pristine and experiment interpreters (and the experiment-off build,
# cpython-build/install/off, when built), minus each interpreter's startup
# (`-S -c pass`). Usage: scripts/callgrind_heap.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/callgrind-heap}
mkdir -p "$out"
for v in pristine experiment off; do
  py=cpython-build/install/$v/bin/python3
  [ -x "$py" ] || { [ $v = off ] && continue; echo "error: $py missing" >&2; exit 1; }
  for s in work empty; do
    if [ $s = work ]; then args=(-S scripts/callgrind_alloc.py); else args=(-S -c pass); fi
    valgrind --tool=callgrind --callgrind-out-file="$out/$v.$s.out" "$py" "${args[@]}" 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\)/\1/p' > "$out/$v.$s.ir"
  done
  w=$(cat "$out/$v.work.ir"); e=$(cat "$out/$v.empty.ir")
  echo "$v: $w total, $e startup, $((w - e)) for the script"
done
