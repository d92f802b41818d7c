#!/usr/bin/env bash
# On the GPU machine: turn the files staged by scripts/gpu_prepare.sh (gathered in FOLDER) back
# into .gpu/bin/{repro,it}, models/all-MiniLM-L6-v2 (sha256-checked) and ../shared/data/glue.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$(cd "${1:?usage: scripts/gpu_unpack.sh FOLDER}" && pwd)"
MODEL=models/all-MiniLM-L6-v2
mkdir -p .gpu/bin "$MODEL" ../shared/data/glue
xz -dc "$SRC/repro.xz" > .gpu/bin/repro
xz -dc "$SRC/it.xz" > .gpu/bin/it
chmod +x .gpu/bin/repro .gpu/bin/it
cat "$SRC/minilm.part0" "$SRC/minilm.part1" > "$MODEL/model.safetensors"
tar -C "$MODEL" -xf "$SRC/minilm_small.tar"
(cd "$MODEL" && sha256sum -c "$SRC/SHA256SUMS")
tar -C ../shared/data/glue -xJf "$SRC/glue.tar.xz"
echo "unpacked: $(ls .gpu/bin | tr '\n' ' ')| $MODEL ok | glue: $(ls ../shared/data/glue | tr '\n' ' ')"
