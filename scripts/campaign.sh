#!/usr/bin/env bash
# Run campaign grids one after another until a deadline, at low priority, two workers each:
# every grid gets `repro run --time-limit <what is left>`, so no run starts that the time left
# cannot finish (judged from the store's own measured times) and a later call resumes the rest.
# Usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...
#   UNTIL: anything `date -d` reads, e.g. "02:00" (today), "2026-11-30 02:00", "+2 hours"
#   GRID:  a name under experiments/paper/ (table1_cpu) or a path to a grid file
# Example, in the background so that it outlives the terminal:
#   setsid nohup scripts/campaign.sh target/release/repro "+2 hours 30 minutes" table1_cpu fig2 \
#       > campaign.log 2>&1 < /dev/null &
# A `--features tch` binary needs libtorch on LD_LIBRARY_PATH (README, "libtorch"); the grids pin
# their backend. One thread per worker (OMP_NUM_THREADS=1): two workers fill two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:?usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...}")"
UNTIL="${2:?usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...}"
shift 2
[ $# -gt 0 ] || { echo "campaign.sh: name at least one grid (e.g. table1_cpu)" >&2; exit 2; }
end=$(date -d "$UNTIL" +%s) || { echo "campaign.sh: cannot read the deadline '$UNTIL'; give e.g. \"+2 hours\" or \"2026-11-30 02:00\"" >&2; exit 2; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
for g in "$@"; do
  f="$g"
  [ -f "$f" ] || f="experiments/paper/$g.toml"
  [ -f "$f" ] || { echo "campaign.sh: no grid '$g' (neither a file nor experiments/paper/$g.toml)" >&2; exit 2; }
  left=$(( end - $(date +%s) ))
  if [ "$left" -le 300 ]; then
    echo "== $(date +%T) deadline: ${left}s left, not starting $g or the grids after it"
    break
  fi
  echo "== $(date +%T) $f (${left}s left)"
  # a grid that stops with an error (a failed run, a bad file) does not stop the ones after it
  nice -n 19 "$BIN" run "$f" --jobs 2 --time-limit "${left}s" || echo "== $(date +%T) $f: repro run exited $?"
done
echo "== $(date +%T) campaign.sh done"
