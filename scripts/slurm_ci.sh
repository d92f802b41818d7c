#!/usr/bin/env bash
# The Slurm path for real (CI, .ci/run): a one-node Slurm on this machine (scripts/slurm_up.sh),
# the smoke grid submitted as a job array of 3 tasks against one store, one task requeued while it
# trains a run (killed and started again, as on preemption), then: every cell of the grid exactly
# once in the store, all done, the killed run trained again by its own shard. The daemons stop at
# the end. Where Slurm cannot be started the test is skipped with a loud message, never silently.
#   scripts/slurm_ci.sh [REPRO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
repro="${1:-${CARGO_TARGET_DIR:-target}/release/repro}"
if ! scripts/slurm_up.sh; then
    echo "##############################################################################"
    echo "## SLURM TEST SKIPPED: Slurm could not be started on this machine (see above) ##"
    echo "##############################################################################"
    exit 0
fi
trap 'scripts/slurm_up.sh down' EXIT
work=$(mktemp -d -p /var/tmp repro-slurm-XXXXXX)
store="$work/store"
fail() { echo "slurm_ci: FAILED: $*" >&2; squeue >&2 || true; tail -n 20 "$store"/slurm/*.log >&2 || true; exit 1; }
start=$(date +%s)

# a partition the cluster does not have is refused before anything is written
if "$repro" slurm experiments/smoke.toml --set "store=$store" --set epochs=3 --partition no-such-partition 2>"$work/err"; then
    fail "an unknown partition was accepted"
fi
grep -q "no such partition" "$work/err" || fail "unknown partition: $(cat "$work/err")"
[ ! -e "$store" ] || fail "a refused submission left a store behind"

# 3 epochs per run (≈10-20 s here), so a run is still training when its task is requeued
out=$("$repro" slurm experiments/smoke.toml --set "store=$store" --set epochs=3 --tasks 3 --requeue --submit)
echo "$out"
job=$(echo "$out" | sed -n 's/^submitted job \([0-9]*\).*/\1/p')
[ -n "$job" ] || fail "no job id in: $out"

# wait until a task is training a run, then requeue that task (Slurm kills it and runs it again)
killed_run=""
for _ in $(seq 1 300); do
    for s in "$store"/runs/*/status.json; do
        [ -f "$s" ] || continue
        if grep -q '"running"' "$s"; then killed_run=$(basename "$(dirname "$s")"); break; fi
    done
    [ -n "$killed_run" ] && break
    sleep 1
done
[ -n "$killed_run" ] || fail "no run started within 300 s"
task=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(p['runs'][sys.argv[2]])" \
    "$(ls "$store"/slurm/*.plan.json | head -1)" "$killed_run")
echo "slurm_ci: requeueing array task ${job}_${task} while it trains run $killed_run"
scontrol requeue "${job}_${task}" || fail "scontrol requeue ${job}_${task}"

# wait for the whole array (bounded)
for _ in $(seq 1 600); do
    [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
    sleep 1
done
[ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && true || fail "job $job still queued after 600 s"

status=$("$repro" status experiments/smoke.toml --set "store=$store" --set epochs=3)
echo "$status"
grep -q '^8 done$' <<<"$status" || fail "the store does not hold the 8 cells done"
n=$(ls "$store/runs" | wc -l)
[ "$n" = 8 ] || fail "$n run folders, expected 8"
for d in "$store"/runs/*/; do
    [ -f "$d/result.json" ] || fail "$d has no result.json"
done
attempts=$(grep -c started "$store/runs/$killed_run/attempts.log" || true)
restarted=$(grep -l "restart 1" "$store"/slurm/"${job}_${task}".log 2>/dev/null || true)
[ -n "$restarted" ] || fail "array task ${job}_${task} was not started again after the requeue"
[ "${attempts:-0}" -ge 2 ] || fail "run $killed_run was started ${attempts:-0} time(s); the requeued task should have restarted it"
echo "slurm_ci: ok — 8 cells done exactly once, run $killed_run restarted after the requeue ($attempts attempts), $(( $(date +%s) - start )) s"
rm -rf "$work"
