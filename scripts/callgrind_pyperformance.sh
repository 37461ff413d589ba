#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of pyperformance
# benchmarks, pristine vs experiment: backs the wall-clock comparison of
# scripts/bench_pyperformance.py (which must have run first: it makes the
# interpreter copies and the benchmark venvs under cpython-build/bench/).
#   scripts/callgrind_pyperformance.sh [BENCHMARKS...]
# One worker value per benchmark (--loops 1, no warm-up), PYTHONHASHSEED=0;
# prints a Markdown table: instructions of each and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
work=cpython-build/bench
bms=$work/pyperformance-venv/lib/python3.13/site-packages/pyperformance/data-files/benchmarks
[ -d "$bms" ] || { echo "error: run scripts/bench_pyperformance.py first" >&2; exit 1; }
venv_for() {   # the benchmark venv whose interpreter is $work/$1
  for cfg in "$work"/venv/*/pyvenv.cfg; do
    if grep -q "^home = $(realpath "$work/$1")/bin\$" "$cfg"; then
      dirname "$cfg"; return
    fi
  done
  echo "error: no benchmark venv for $1" >&2; exit 1
}
p_py=$(venv_for pristine)/bin/python
e_py=$(venv_for experiment)/bin/python
# name:directory[:arguments of run_benchmark.py, comma-separated]
default="richards:bm_richards deltablue:bm_deltablue float:bm_float
nbody:bm_nbody chaos:bm_chaos go:bm_go hexiom:bm_hexiom nqueens:bm_nqueens
raytrace:bm_raytrace deepcopy:bm_deepcopy json_loads:bm_json_loads
json_dumps:bm_json_dumps gc_collect:bm_gc_collect gc_traversal:bm_gc_traversal
generators:bm_generators coroutines:bm_coroutines
comprehensions:bm_comprehensions
unpickle_pure_python:bm_pickle:--pure-python,unpickle
pickle_pure_python:bm_pickle:--pure-python,pickle"
list=${*:-$default}
count() {   # instructions of one worker value
  local out; out=$(mktemp)
  PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$1" "$2" --worker --loops 1 --values 1 --warmups 0 -p 1 ${3//,/ } \
    >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
  sed -n 's/^==[0-9]*== Collected : //p' "$out.log"
  rm -f "$out" "$out.log"
}
echo "| benchmark | pristine | experiment | ratio |"
echo "|---|---|---|---|"
tp=0; te=0; logsum=0; n=0
for item in $list; do
  IFS=: read -r name dir arg <<<"$item"
  script=$bms/$dir/run_benchmark.py
  p=$(count "$p_py" "$script" "$arg")
  e=$(count "$e_py" "$script" "$arg")
  python3 -c "print('| %s | %d | %d | %.4f |' % ('$name', $p, $e, $e / $p))"
  echo "$name $p $e" >> "$work/callgrind-counts.txt"
done
python3 - "$work/callgrind-counts.txt" <<'PY'
import math, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
r = [int(e) / int(p) for _, p, e in rows]
print("\ngeometric mean of the ratios (%d benchmarks): %.4f"
      % (len(r), math.exp(sum(map(math.log, r)) / len(r))))
PY
rm -f "$work/callgrind-counts.txt"
