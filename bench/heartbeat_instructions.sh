#!/usr/bin/env bash
# Instructions per heartbeat in the server process, counted by valgrind (callgrind), which counts the same
# total for the same code and input whatever else the machine is doing. Two runs under valgrind, one with
# warm-up only and one with N more heartbeats; their difference divided by N cancels the start-up.
#
#   DATABASE_URL=... .venv/bin/python bench/heartbeat_cost.py prepare --agents 200   # once
#   DATABASE_URL=... bench/heartbeat_instructions.sh 1000
set -euo pipefail
N=${1:-1000}
WARMUP=${WARMUP:-200}
PY=${PY:-.venv/bin/python}
OUT=$(mktemp -d)
count() {  # count REQUESTS ROUNDS -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$PY" bench/heartbeat_cost.py run \
    --requests "$1" --rounds "$2" --warmup "$WARMUP" > /dev/null 2> "$OUT/log.$1"
  awk '/^(summary|totals):/ {print $2; exit}' "$OUT/cg.$1"
}
base=$(count 0 0)
full=$(count "$N" 1)
echo "instructions: warm-up only $base, with $N heartbeats $full; per heartbeat $(( (full - base) / N ))"
rm -rf "$OUT"
