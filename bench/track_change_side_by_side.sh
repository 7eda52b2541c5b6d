#!/bin/bash
# The track-change run (local and http) for BEFORE (a src directory, e.g. /work/main/src) and
# this tree, in turns: one round on an idle machine, then two beside two endless x264 encodes
# (what made tracks come late over http). One JSON line per run in $OUT/runs.jsonl.
# Usage: BEFORE=/path/to/other/src OUT=/tmp/tc bench/track_change_side_by_side.sh
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:?OUT=directory for logs and runs.jsonl}
py=${PYTHON:-python}
mkdir -p "$out"
run() { # load case side
  if [ "$3" = before ]; then src=$BEFORE; else src=$here/src; fi
  line=$(PYTHONPATH=$src:$here timeout 300 "$py" "$here/bench/track_change_json.py" "$out/media" "$2" \
    "$out/$1-$3-$2.log" 2>"$out/$1-$3-$2.err" | tail -1)
  echo "{\"load\":\"$1\",\"side\":\"$3\",\"case\":\"$2\",\"r\":${line:-null}}" >> "$out/runs.jsonl"
}
hog() {
  ffmpeg -nostdin -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -c:v libx264 -preset medium -f null - >/dev/null 2>&1 </dev/null &
}
for case in local http; do for side in before after; do run idle $case $side; done; done
hog; h1=$!; hog; h2=$!
for round in 1 2; do
  for case in http local; do for side in before after; do run loaded$round $case $side; done; done
done
kill $h1 $h2
