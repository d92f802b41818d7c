#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, PyTorch and no network, from a stripped release
# binary and test binary built with `--features tch` (scripts/gpu_prepare.sh makes them):
#   1. the PyTorch-equivalence tests on `tch-cuda` (and `tch` on the CPU): forward of the tiny BERT
#      and MiniLM, five golden optimizer steps of full_ft, bitfit and b_q+b_m2 (classification and
#      regression);
#   2. `repro bench` on the MiniLM and bert-base shapes (random weights) on `tch-cuda`, and
#      scripts/bench_pytorch.py on the same shapes on the same GPU;
#   3. one summary table.
# Finishes in well under 8 minutes on one H200.
# Usage: scripts/gpu_check.sh [BIN_DIR] [OUT_DIR]   (BIN_DIR holds repro and it; default .gpu/bin)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.gpu/bin}"
OUT="${2:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$OUT"
REPO="$PWD"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

# the test binary finds its fixtures through the folder it was built in (CARGO_MANIFEST_DIR;
# BUILT_IN, default /work/main): point that path at this checkout when it does not exist here
built_in="${BUILT_IN:-/work/main}"
if [ "$built_in" != "$REPO" ] && [ ! -e "$built_in" ]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$REPO" "$built_in"
fi
# libtorch: the GPU machine's PyTorch (the binaries were built against the same version)
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== 1. PyTorch-equivalence tests on tch-cuda (and tch)"
t0=$(date +%s)
BITFIT_TEST_CUDA=1 BITFIT_MINILM="${BITFIT_MINILM:-$REPO/models/all-MiniLM-L6-v2}" timeout 300 "$BIN/it" --test-threads 1 \
  tiny_bert_matches_pytorch_on_every_backend minilm_matches_pytorch golden_steps 2>&1 | tee "$OUT/equivalence.txt"
eq_rc=${PIPESTATUS[0]}
echo "equivalence tests: rc $eq_rc in $(( $(date +%s) - t0 )) s"

echo "== 2. bench: MiniLM and bert-base shapes, batch 32, length 128"
"$BIN/repro" bench --model tests/fixtures/minilm_shape --backends tch-cuda --methods full_ft,bitfit,b_q+b_m2 \
  --steps 10 --warmup 3 --json "$OUT/bench_minilm.json" 2>&1 | tee "$OUT/bench.txt"
"$BIN/repro" bench --shape bert-base-cased --backends tch-cuda --methods full_ft,bitfit \
  --steps 10 --warmup 3 --json "$OUT/bench_bert_base.json" 2>&1 | tee -a "$OUT/bench.txt"
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 scripts/bench_pytorch.py --device cuda --model tests/fixtures/minilm_shape --methods full_ft,bitfit,b_q+b_m2 \
    --steps 10 --warmup 3 --json "$OUT/bench_pytorch_minilm.json" 2>&1 | tee -a "$OUT/bench.txt"
  python3 scripts/bench_pytorch.py --device cuda --shape bert-base-cased --methods full_ft,bitfit \
    --steps 10 --warmup 3 --json "$OUT/bench_pytorch_bert_base.json" 2>&1 | tee -a "$OUT/bench.txt"
fi

echo "== 3. summary"
python3 - "$OUT" "$eq_rc" <<'PY' | tee "$OUT/summary.md"
import glob, json, os, sys
out, eq_rc = sys.argv[1], int(sys.argv[2])
eq = open(os.path.join(out, "equivalence.txt")).read()
print(f"GPU: {open(os.path.join(out, 'gpu.txt')).read().strip()}")
print(f"equivalence tests on tch-cuda and tch: {'PASS' if eq_rc == 0 else 'FAIL (rc %d)' % eq_rc}")
for line in eq.splitlines():
    if "steps match" in line or "test result" in line or "FAILED" in line or "panicked" in line:
        print("  " + line.strip())
rows = []
for f in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
    rows += json.load(open(f))
torch_ms = {(r["shape"], r["method"]): r["ms_per_step_median"] for r in rows if r["backend"].startswith("pytorch")}
print("\n| shape | backend | method | ms/step | examples/s | GFLOP/s | peak MiB | × PyTorch ex/s |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    ref = torch_ms.get((r["shape"], r["method"]))
    ratio = f"{ref / r['ms_per_step_median']:.2f}" if ref else "–"
    print(f"| {r['shape']} | {r['backend']} | {r['method']} | {r['ms_per_step_median']:.1f} | "
          f"{r['examples_per_second']:.0f} | {r['gflops_per_second']:.0f} | {r['peak_rss_mib']:.0f} | {ratio} |")
PY
echo "gpu_check: $(( $(date +%s) - start )) s"
exit "$eq_rc"
