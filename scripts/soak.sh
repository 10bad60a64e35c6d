#!/usr/bin/env bash
# Soak: run the suite N times, each from a fresh clone of the committed tree (npm ci from the npm
# cache, then npm test), and print pass/fail counts and durations. A flake shows up here that one
# run hides. --stress keeps every core busy with stress-ng meanwhile (killed at the end); --ci runs
# the whole of .ci/run (npm ci, npm test, then the newer-Nix roots) instead of npm ci + npm test.
#
#   scripts/soak.sh [-n N] [--stress] [--ci] [--keep] [--repo DIR]
#
# Logs go to $SOAK_DIR (default: a new /tmp/nixvm-soak-XXXX); clones of passing runs are removed,
# those of failing runs kept with their log, and --keep keeps all.
set -uo pipefail

runs=10
stress=0
keep=0
ci=0
repo=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs=$2; shift 2 ;;
    --stress) stress=1; shift ;;
    --keep) keep=1; shift ;;
    --ci) ci=1; shift ;;
    --repo) repo=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

dir=${SOAK_DIR:-$(mktemp -d /tmp/nixvm-soak-XXXX)}
mkdir -p "$dir"
commit=$(git -C "$repo" rev-parse --short HEAD)
echo "soak: $runs fresh-clone runs$([ $ci = 1 ] && echo ' of .ci/run') of $repo at $commit$([ $stress = 1 ] && echo ', cores kept busy by stress-ng'); logs in $dir"

stress_pid=
stop_stress() {
  if [ -n "$stress_pid" ]; then
    kill "$stress_pid" 2>/dev/null
    wait "$stress_pid" 2>/dev/null
    stress_pid=
  fi
}
trap 'stop_stress; exit 130' INT TERM
trap stop_stress EXIT
if [ $stress = 1 ]; then
  command -v stress-ng >/dev/null || { echo 'soak: --stress needs stress-ng (apt-get install stress-ng)' >&2; exit 2; }
  stress-ng --cpu "$(nproc)" --timeout 0 >/dev/null 2>&1 &
  stress_pid=$!
fi

pass=0
fail=0
durations=()
for i in $(seq 1 "$runs"); do
  clone="$dir/run-$i"
  log="$dir/run-$i.log"
  rm -rf "$clone"
  t0=$(date +%s)
  ok=0
  if git clone -q "$repo" "$clone" >"$log" 2>&1 &&
    if [ $ci = 1 ]; then (cd "$clone" && ./.ci/run); else (cd "$clone" && npm ci --no-audit --no-fund --prefer-offline && npm test); fi >>"$log" 2>&1; then
    ok=1
  fi
  secs=$(($(date +%s) - t0))
  durations+=("$secs")
  if [ $ok = 1 ]; then
    pass=$((pass + 1))
    echo "run $i: pass in ${secs}s"
    [ $keep = 1 ] || rm -rf "$clone"
  else
    fail=$((fail + 1))
    echo "run $i: FAIL in ${secs}s (log: $log)"
    # The failing tests and their first error lines, without colours.
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ *(FAIL|×)|Error:' | head -n 12 | sed 's/^/    /'
  fi
done

sorted=$(printf '%s\n' "${durations[@]}" | sort -n)
min=$(echo "$sorted" | head -n1)
max=$(echo "$sorted" | tail -n1)
median=$(echo "$sorted" | sed -n "$(((${#durations[@]} + 1) / 2))p")
echo "soak: $pass passed, $fail failed of $runs; duration min ${min}s, median ${median}s, max ${max}s"
[ $fail = 0 ]
