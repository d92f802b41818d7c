#!/usr/bin/env bash
# The second, independent implementation as the judge (REPRODUCTION.md), on a GPU machine:
# scripts/reference_trainer.py (transformers' BertForSequenceClassification, the reference
# optimizer and clipping) runs the judge cells — the same task, methods, learning rates, seeds and
# protocol as the harness's cells in experiments/paper/table2.toml — in parallel processes, one
# JSON per run into OUT/pytorch/. With time left it runs the wider sweep in JUDGE_SWEEP too.
# Usage: scripts/gpu_judge.sh OUT [SECONDS]      (after scripts/gpu_unpack.sh)
# The cells come from the environment (defaults: the judge cells named in REPRODUCTION.md):
#   JUDGE_RUNS   space-separated TASK:METHOD:LR:SEED
#   JUDGE_SWEEP  space-separated TASK:METHOD:LR:SEED, run after JUDGE_RUNS while time is left
#   JUDGE_ARGS   protocol flags for reference_trainer.py (epochs, batch, length)
#   JUDGE_PROCS  parallel processes (default 12)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/gpu_judge.sh OUT [SECONDS]}"
LIMIT="${2:-360}"
PROCS="${JUDGE_PROCS:-12}"
mkdir -p "$OUT/pytorch" "$OUT/logs"
start=$(date +%s)

run_list() { # $1: label, rest: runs; round-robin over PROCS processes, each under the time left
  local label=$1; shift
  local runs=("$@") i p left
  left=$(( LIMIT - ($(date +%s) - start) ))
  [ "$left" -gt 20 ] || { echo "$label: no time left"; return; }
  for ((p = 0; p < PROCS; p++)); do
    local mine=()
    for ((i = p; i < ${#runs[@]}; i += PROCS)); do mine+=(--run "${runs[$i]}"); done
    [ ${#mine[@]} -gt 0 ] || continue
    # shellcheck disable=SC2086
    timeout "$left" python3 scripts/reference_trainer.py ${JUDGE_ARGS:-} "${mine[@]}" --out-dir "$OUT/pytorch" \
      > "$OUT/logs/${label}_$p.log" 2>&1 &
  done
  wait
  echo "$label: $(ls "$OUT/pytorch" | wc -l) run files after $(( $(date +%s) - start )) s"
}

read -r -a judge <<< "${JUDGE_RUNS:?set JUDGE_RUNS (see REPRODUCTION.md)}"
run_list judge "${judge[@]}"
if [ -n "${JUDGE_SWEEP:-}" ]; then
  read -r -a sweep <<< "$JUDGE_SWEEP"
  run_list sweep "${sweep[@]}"
fi
grep -h "best epoch" "$OUT"/logs/*.log | sort
echo "gpu_judge: $(( $(date +%s) - start )) s"
