#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of pyperformance
# benchmarks, pristine vs experiment: backs the wall-clock comparison of
# scripts/bench_pyperformance.py (which must have run first: it makes the
# interpreter copies and the benchmark venvs under cpython-build/bench/).
#   scripts/callgrind_pyperformance.sh [--sim] [--off|--installed|--opt|--shifted] [BENCHMARKS...]
# --off compares pristine with the experiment-off build instead (the patch
# series configured without the experiment, cpython-build/install/off;
# spec §4: within noise of pristine), each through a venv of its installed
# interpreter with the pyperf the benchmark venvs use.
# --installed compares the installed pristine and experiment interpreters
# the same way (cpython-build/install/*: what ./run build made last, not
# the copies the wall-clock run made).
# --opt compares the PGO+LTO pair the same way (pristine-opt and
# experiment-opt: `ninja -C cpython-build/_meson optimized`).
# --shifted compares pristine with pristine-shifted (pristine's code at
# other addresses, `ninja -C cpython-build/_meson pristine-shifted.stamp`):
# the same instructions, so what --sim adds shows code placement alone.
# One worker value per benchmark (--loops 1, no warm-up), PYTHONHASHSEED=0;
# prints a Markdown table: instructions of each and the ratio.
# --sim also simulates the caches and the branch predictor
# (--cache-sim=yes --branch-sim=yes, about twice as slow) and adds
# callgrind's cycle estimate, CEst = Ir + 10 (L1 misses + mispredicted
# branches) + 100 LL misses (KCachegrind's formula): what the added code
# does to the instruction cache, data cache and branch prediction, which
# instruction counts alone do not show. Still exact and repeatable.
set -euo pipefail
cd "$(dirname "$0")/.."
sim= a=pristine b=experiment installed=
while [ $# -gt 0 ]; do
  case $1 in
    --sim) sim=1; shift ;;
    --off) b=off; installed=1; shift ;;
    --installed) installed=1; shift ;;
    --opt) a=pristine-opt; b=experiment-opt; installed=1; shift ;;
    --shifted) b=pristine-shifted; installed=1; shift ;;
    *) break ;;
  esac
done
work=cpython-build/bench
bms=$work/pyperformance-venv/lib/python3.13/site-packages/pyperformance/data-files/benchmarks
if [ ! -d "$bms" ] && [ -n "$installed" ]; then
  # Only the benchmarks' files are needed: pyperformance in a venv of the
  # installed pristine (scripts/requirements-pyperformance.txt).
  cpython-build/install/pristine/bin/python3 -m venv "$work/pyperformance-venv"
  "$work/pyperformance-venv/bin/python" -m pip install -q \
    -r scripts/requirements-pyperformance.txt
fi
[ -d "$bms" ] || { echo "error: run scripts/bench_pyperformance.py first" >&2; exit 1; }
venv_for() {   # the benchmark venv whose interpreter is $work/$1
  for cfg in "$work"/venv/*/pyvenv.cfg; do
    if grep -q "^home = $(realpath "$work/$1")/bin\$" "$cfg"; then
      dirname "$cfg"; return
    fi
  done
  echo "error: no benchmark venv for $1" >&2; exit 1
}
if [ -z "$installed" ]; then
  p_py=$(venv_for pristine)/bin/python
  e_py=$(venv_for experiment)/bin/python
else
  # Both sides from their installed interpreters, the same way, with the
  # pyperf that pyperformance's benchmark venvs pin.
  ver=$("$work/pyperformance-venv/bin/python" -c '
import importlib.resources as r, re
t = (r.files("pyperformance") / "requirements" / "requirements.txt").read_text()
print(re.search(r"^pyperf==([0-9.]+)", t, re.M).group(1))')
  for v in $a $b; do
    venv=$work/callgrind-venv/$v
    inst=cpython-build/install/$v/bin/python3
    case $v in
      *-opt) how="ninja -C cpython-build/_meson optimized" ;;
      pristine-shifted) how="ninja -C cpython-build/_meson pristine-shifted.stamp" ;;
      *) how="./run build" ;;
    esac
    [ -x "$inst" ] || { echo "error: $inst missing: run $how" >&2; exit 1; }
    # The venv links to the installed interpreter: a rebuild is seen.
    if [ ! -x "$venv/bin/python" ]; then
      "$inst" -m venv "$venv"
      "$venv/bin/python" -m pip install -q "pyperf==$ver"
    fi
  done
  p_py=$work/callgrind-venv/$a/bin/python
  e_py=$work/callgrind-venv/$b/bin/python
fi
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
count() {   # events of one worker value: Ir, or with --sim all of them
  local out; out=$(mktemp)
  PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$out" \
    ${sim:+--cache-sim=yes --branch-sim=yes} \
    "$1" "$2" --worker --loops 1 --values 1 --warmups 0 -p 1 ${3//,/ } \
    >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
  sed -n 's/^==[0-9]*== Collected : //p' "$out.log"
  rm -f "$out" "$out.log"
}
counts=$work/callgrind-counts.txt
: > "$counts"
if [ -n "$sim" ]; then
  echo "| benchmark | Ir ratio | I1 misses $a / $b | D1 misses $a / $b | mispredicted branches $a / $b | CEst $a | CEst $b | CEst ratio |"
  echo "|---|---|---|---|---|---|---|---|"
else
  echo "| benchmark | $a | $b | ratio |"
  echo "|---|---|---|---|"
fi
for item in $list; do
  IFS=: read -r name dir arg <<<"$item"
  script=$bms/$dir/run_benchmark.py
  # The two runs are independent and their counts do not depend on load:
  # run them side by side.
  pf=$(mktemp); ef=$(mktemp)
  count "$p_py" "$script" "$arg" > "$pf" &
  pp=$!
  count "$e_py" "$script" "$arg" > "$ef" &
  wait $pp; wait $!
  p=$(cat "$pf"); e=$(cat "$ef"); rm -f "$pf" "$ef"
  echo "$name|$p|$e" >> "$counts"
  python3 - "$name" "$p" "$e" "$sim" <<'PY'
import sys
name, p, e, sim = sys.argv[1:]
p, e = [list(map(int, x.split())) for x in (p, e)]
if not sim:
    print("| %s | %d | %d | %.4f |" % (name, p[0], e[0], e[0] / p[0]))
    sys.exit()
# Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
def cest(v):
    return (v[0] + 10 * (v[3] + v[4] + v[5] + v[10] + v[12])
            + 100 * (v[6] + v[7] + v[8]))
print("| %s | %.4f | %d / %d | %d / %d | %d / %d | %d | %d | %.4f |" % (
    name, e[0] / p[0], p[3], e[3], p[4] + p[5], e[4] + e[5],
    p[10] + p[12], e[10] + e[12], cest(p), cest(e), cest(e) / cest(p)))
PY
done
python3 - "$counts" "$sim" <<'PY'
import math, sys
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
def gmean(r):
    return math.exp(sum(map(math.log, r)) / len(r))
ir = [int(e.split()[0]) / int(p.split()[0]) for _, p, e in rows]
print("\ngeometric mean of the ratios (%d benchmarks): instructions %.4f"
      % (len(ir), gmean(ir)), end="")
if sys.argv[2]:
    def cest(v):
        v = list(map(int, v.split()))
        return (v[0] + 10 * (v[3] + v[4] + v[5] + v[10] + v[12])
                + 100 * (v[6] + v[7] + v[8]))
    print(", CEst %.4f" % gmean([cest(e) / cest(p) for _, p, e in rows]),
          end="")
print()
PY
rm -f "$counts"
