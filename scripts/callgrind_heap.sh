#!/usr/bin/env bash
# Instruction counts (valgrind callgrind) of an allocation-heavy script on
# the pristine and experiment interpreters (and the experiment-off build,
# cpython-build/install/off, when built), minus each interpreter's startup
# (`-S -c pass`), with PYTHONHASHSEED=0 so the counts repeat.
# Last line: the experiment running the script inside secret.do().
# Usage: scripts/callgrind_heap.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/callgrind-heap}
mkdir -p "$out"
ir() {   # ir NAME PYTHON ARGS...: run under callgrind, write NAME.ir
  local name=$1; shift
  PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$out/$name.out" "$@" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\)/\1/p' > "$out/$name.ir"
}
for v in pristine experiment off; do
  py=cpython-build/install/$v/bin/python3
  [ -x "$py" ] || { [ $v = off ] && continue; echo "error: $py missing" >&2; exit 1; }
  for s in work empty; do
    if [ $s = work ]; then args=(-S scripts/callgrind_alloc.py); else args=(-S -c pass); fi
    ir "$v.$s" "$py" "${args[@]}"
  done
  w=$(cat "$out/$v.work.ir"); e=$(cat "$out/$v.empty.ir")
  echo "$v: $w total, $e startup, $((w - e)) for the script"
done
# The same work inside one secret.do() on the experiment: the secret heap's
# paths (what work inside do pays), minus a start-up that imports secret.
py=cpython-build/install/experiment/bin/python3
for s in do doempty; do
  if [ $s = do ]; then args=(-S scripts/callgrind_alloc.py do); else args=(-S -c "import secret"); fi
  ir "experiment.$s" "$py" "${args[@]}"
done
d=$(( $(cat "$out/experiment.do.ir") - $(cat "$out/experiment.doempty.ir") ))
w=$(( $(cat "$out/experiment.work.ir") - $(cat "$out/experiment.empty.ir") ))
echo "experiment inside do: $d for the script, $(python3 -c "print('%.3f' % ($d / $w))")x outside"
