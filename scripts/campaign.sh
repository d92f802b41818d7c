#!/usr/bin/env bash
# Run campaign grids until a deadline, at low priority, in parallel lanes: each lane (one
# `repro run --jobs 1` at a time, one core) goes through the grids in the order given, and every
# run goes to whichever lane claims it first (a run's lock is held while it trains, so no two lanes
# train one run). A lane that finds a grid's last runs taken by the other lane moves on to the
# next grid instead of waiting, so no core idles at a grid's tail. Every `repro run` gets
# `--time-limit <what is left>`: no run starts that the time left cannot finish (judged from the
# store's own measured times) and a later call resumes the rest. A grid none of whose runs has a
# measured time yet starts one run per lane whatever the time left (that run teaches the store).
# Usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...
#   UNTIL: anything `date -d` reads, e.g. "02:00" (today), "2026-11-30 02:00", "+2 hours"
#   GRID:  a name under experiments/paper/ (table1_cpu) or a path to a grid file
#   CAMPAIGN_LANES: lanes (default 2; one training process keeps about one core busy)
# Example, in the background so that it outlives the terminal:
#   setsid nohup scripts/campaign.sh target/release/repro "+2 hours 30 minutes" table1_cpu fig2 \
#       > campaign.log 2>&1 < /dev/null &
# A `--features tch` binary needs libtorch on LD_LIBRARY_PATH (README, "libtorch"); the grids pin
# their backend. One thread per lane (OMP_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:?usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...}")"
UNTIL="${2:?usage: scripts/campaign.sh REPRO_BINARY UNTIL GRID...}"
shift 2
[ $# -gt 0 ] || { echo "campaign.sh: name at least one grid (e.g. table1_cpu)" >&2; exit 2; }
end=$(date -d "$UNTIL" +%s) || { echo "campaign.sh: cannot read the deadline '$UNTIL'; give e.g. \"+2 hours\" or \"2026-11-30 02:00\"" >&2; exit 2; }
lanes="${CAMPAIGN_LANES:-2}"
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "campaign.sh: CAMPAIGN_LANES must be a positive whole number, not '$lanes'" >&2; exit 2; }
files=()
for g in "$@"; do
  f="$g"
  [ -f "$f" ] || f="experiments/paper/$g.toml"
  [ -f "$f" ] || { echo "campaign.sh: no grid '$g' (neither a file nor experiments/paper/$g.toml)" >&2; exit 2; }
  files+=("$f")
done
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

lane() {
  local n=$1 f left
  for f in "${files[@]}"; do
    left=$(( end - $(date +%s) ))
    if [ "$left" -le 300 ]; then
      echo "== $(date +%T) lane $n: deadline: ${left}s left, not starting $f or the grids after it"
      return
    fi
    echo "== $(date +%T) lane $n: $f (${left}s left)"
    # a grid that stops with an error (a failed run, a bad file) does not stop the ones after it
    nice -n 19 "$BIN" run "$f" --jobs 1 --time-limit "${left}s" 2>&1 | sed -u "s/^/[lane $n] /" \
      || echo "== $(date +%T) lane $n: $f: repro run exited ${PIPESTATUS[0]}"
  done
}

# Ctrl-C or a kill of this script stops the lanes and their runs too (an interrupted run restarts
# from its beginning next time); otherwise background lanes would ignore SIGINT and go on
trap 'trap - INT TERM; kill 0' INT TERM
for n in $(seq 1 "$lanes"); do
  lane "$n" &
  sleep 2  # stagger the starts (the run locks, not this pause, keep two lanes off one run)
done
wait
echo "== $(date +%T) campaign.sh done"
