#!/usr/bin/env bash
# Stage the finished run records of the campaign's stores and regenerate paper_tables/ and
# REPRODUCTION.md's generated blocks from exactly the staged records (what a fresh clone's
# `repro report` and `scripts/claims.py` write; the e2e tests committed_records_regenerate_paper_tables
# and reproduction_md_generated_blocks_regenerate_from_committed_records check them). Unfinished runs
# stay unstaged.
# Usage: scripts/commit_records.sh REPRO_BINARY [STORE...]   (default: every results/*/ store)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:?usage: scripts/commit_records.sh REPRO_BINARY [STORE...]}")"
shift
stores=("$@")
[ ${#stores[@]} -gt 0 ] || stores=(results/*/)
for s in "${stores[@]}"; do
  for d in "${s%/}"/runs/*/; do
    [ -f "$d/result.json" ] && git add "$d"
  done
done
tmp=$(mktemp -d)
git checkout-index -a --prefix="$tmp/"
tracked=$(git ls-files results | grep /runs/ | cut -d/ -f2 | sort -u)
args=()
for s in $tracked; do args+=(--results "results/$s"); done
(cd "$tmp" && rm -f paper_tables/*.png paper_tables/*.svg paper_tables/*.md paper_tables/*.csv \
  paper_tables/*.tex paper_tables/aggregate.parquet && "$BIN" report "${args[@]}" > /dev/null)
rm -f paper_tables/*.png paper_tables/*.svg paper_tables/*.md paper_tables/*.csv paper_tables/*.tex \
  paper_tables/aggregate.parquet
cp "$tmp"/paper_tables/*.* paper_tables/
git add -A paper_tables
rm -rf "$tmp"
# REPRODUCTION.md's generated blocks (claim numbers, harness vs PyTorch) from the same (now
# tracked) records; claims.py last: it then warns of every hand-written number around the blocks
# that neither block holds any more (the text to update before committing; its --check fails on them)
python3 scripts/judge_compare.py --pytorch results/judge_pytorch --update REPRODUCTION.md
python3 scripts/claims.py --update REPRODUCTION.md
git add REPRODUCTION.md
echo "staged records of: $tracked; paper_tables/ and REPRODUCTION.md's claim numbers regenerated from them"
