#!/usr/bin/env bash
# The libtorch (burn-tch) check: build with `--features tch` against the PyPI torch wheel and run
# the PyTorch-equivalence tests (forward on tiny BERT and MiniLM, golden optimizer steps) on the
# `tch` backend, then a short benchmark beside ndarray. Not part of CI (a ~4 GB wheel and a
# second build of the burn stack); run it by hand:
#   scripts/check_tch.sh [VENV]      (VENV default .venv-torch, created if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-torch}"
# tch 0.22 (burn-tch 0.22.1) is built for libtorch 2.9.0
if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.9.0"))' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.9.0
fi
torch_lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$venv/bin:$PATH" LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/bitfit-repro/target}"
cargo test --release --locked --features tch -- model:: finetune::golden
cargo run --release --locked --features tch -- bench --backends tch,ndarray --methods full_ft,bitfit --steps 3 --warmup 1
