#!/usr/bin/env bash
# Stage, on this machine, what a GPU machine without network needs for scripts/gpu_check.sh,
# scripts/gpu_judge.sh and scripts/gpu_campaign.sh: the release binary and the test binary built
# with `--features tch` against the same PyTorch the GPU machine has (stripped, xz; they load that
# machine's libtorch at run time), the MiniLM weights cut in two byte halves (one transfer carries
# at most 64 MiB), and the GLUE tasks.
# burn's own `cuda` backend cannot be built here: cubecl-cuda 0.11.3 always pulls cubecl-llvm,
# whose build script downloads an LLVM bundle. So the GPU path is libtorch (`tch-cuda`).
# VENV (default .venv-torch) must hold the GPU machine's torch version (there: 2.11.0+cu130);
# tch 0.22 expects 2.9.0, so the version check is bypassed (the equivalence tests are the check).
#   .gpu/a/  minilm.part0  repro.xz
#   .gpu/b/  minilm.part1  it.xz  minilm_small.tar  glue.tar.xz  SHA256SUMS
# On the GPU machine: copy both folders' files into one folder and run
#   scripts/gpu_unpack.sh FOLDER    (reassembles, checks sha256, unpacks into the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/bitfit-repro/target}"
MODEL=models/all-MiniLM-L6-v2
DATA="${DATA:-../shared/data/glue}"

VENV="${VENV:-.venv-torch}"
torch_lib="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$PWD/$VENV/bin:$PATH"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --release --locked --features tch
it=$(cargo test --release --locked --features tch --no-run 2>&1 | grep -o '(/[^)]*/deps/it-[0-9a-f]*)' | tr -d '()' | tail -1)
[ -x "$it" ] || { echo "error: test binary not found in cargo's output" >&2; exit 1; }

rm -rf .gpu/a .gpu/b .gpu/tmp && mkdir -p .gpu/a .gpu/b .gpu/tmp
strip -o .gpu/tmp/repro "$CARGO_TARGET_DIR/release/repro"
strip -o .gpu/tmp/it "$it"
xz -9e -T1 -c .gpu/tmp/repro > .gpu/a/repro.xz &
xz -9e -T1 -c .gpu/tmp/it > .gpu/b/it.xz
wait
tar -C "$MODEL" -cf .gpu/b/minilm_small.tar config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json
tar -C "$DATA" -cJf .gpu/b/glue.tar.xz CoLA SST-2 MRPC STS-B RTE
(cd "$MODEL" && sha256sum model.safetensors) > .gpu/b/SHA256SUMS
# cut the weights so that both folders weigh the same (each call also carries the working tree)
size=$(stat -c %s "$MODEL/model.safetensors")
extra_a=$(du -cb .gpu/a/* | tail -1 | cut -f1)
extra_b=$(du -cb .gpu/b/* | tail -1 | cut -f1)
cut=$(( (size + extra_b - extra_a) / 2 ))
head -c "$cut" "$MODEL/model.safetensors" > .gpu/a/minilm.part0
tail -c +$(( cut + 1 )) "$MODEL/model.safetensors" > .gpu/b/minilm.part1
rm -rf .gpu/tmp
tree=$( (git ls-files; git ls-files --others --exclude-standard) | sort -u | xargs -d '\n' stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
for d in a b; do
  echo ".gpu/$d: $(( ($(du -cb .gpu/$d/* | tail -1 | cut -f1) + tree) / 1048576 )) MiB with the working tree (limit 64)"
done
