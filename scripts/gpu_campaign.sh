#!/usr/bin/env bash
# One GPU session of the reproduction campaign (REPRODUCTION.md), after scripts/gpu_unpack.sh:
#   - scripts/gpu_check.sh (cuda equivalence tests, bench) in the background;
#   - the PyTorch judge (scripts/gpu_judge.sh): Table 2's RTE cells first, then its other cells;
#   - the harness on `tch-cuda`: experiments/paper/{table2,table3,fig2}.toml side by side, each under
#     `repro run --time-limit`, so that no run is started that the time left cannot finish.
# Everything it made comes back packed in OUT (at most 8 files): results.tar.xz (the grid stores,
# without token caches), judge.tar.xz, check.tar.xz, logs.tar.xz.
# Usage: scripts/gpu_campaign.sh OUT [MINUTES]   (default 8)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/gpu_campaign.sh OUT [MINUTES]}"
MIN="${2:-8}"
mkdir -p "$OUT" /tmp/campaign/logs
start=$(date +%s)
BIN=.gpu/bin
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

scripts/gpu_check.sh "$BIN" /tmp/campaign/check > /tmp/campaign/logs/gpu_check.log 2>&1 &

# the judge: every Table 2 cell in PyTorch, in the harness's grid order (RTE first), same protocol
cells() { # TASK list
  for t in "$@"; do
    for ml in bitfit:1e-4 bitfit:3e-4 bitfit:1e-3 full_ft:1e-5 full_ft:2e-5 full_ft:5e-5; do
      for s in 0 1 2; do echo -n "$t:$ml:$s "; done
    done
  done
}
JUDGE_RUNS="$(cells RTE)" JUDGE_SWEEP="$(cells MRPC STS-B CoLA)" JUDGE_PROCS=6 \
  JUDGE_ARGS="--epochs 10 --batch-size 8 --max-length 128 --threads 2" \
  scripts/gpu_judge.sh /tmp/campaign/judge $(( MIN * 60 - 20 )) > /tmp/campaign/logs/gpu_judge.log 2>&1 &

for g in table2:6 table3:2 fig2:2; do
  timeout $(( MIN * 60 )) "$BIN/repro" run "experiments/paper/${g%%:*}.toml" --jobs "${g##*:}" --time-limit "${MIN}m" \
    > "/tmp/campaign/logs/${g%%:*}.log" 2>&1 &
done
wait
# workers of a grid stopped at the limit outlive their parent: stop them before packing
pkill -f "repro run" ; pkill -f reference_trainer.py ; sleep 2
tar -C . --exclude='cache' --exclude='lock' -cJf "$OUT/results.tar.xz" results
tar -C /tmp/campaign -cJf "$OUT/judge.tar.xz" judge
tar -C /tmp/campaign -cJf "$OUT/check.tar.xz" check
tar -C /tmp/campaign -cJf "$OUT/logs.tar.xz" logs
cp /tmp/campaign/check/summary.md "$OUT/" 2>/dev/null
for g in table2 table3 fig2; do tail -3 "/tmp/campaign/logs/$g.log"; done
tail -5 /tmp/campaign/logs/gpu_judge.log
cat /tmp/campaign/check/summary.md 2>/dev/null
echo "gpu_campaign: $(( $(date +%s) - start )) s"
