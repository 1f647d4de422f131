#!/bin/bash
# Instructions the gateway spends per request, counted by callgrind (BENCHMARKS.md's method):
# a simulator with bench's two models, the gateway under callgrind with its default `info` log,
# then per route 200 requests to warm up, counters zeroed, 2,000 LLM requests (bench's body) or
# 1,000 text-to-image jobs each followed by the GET of its image, over one keep-alive
# connection, and a dump. Instructions per request = the dump's total / requests.
#
# usage: scripts/callgrind/run.sh <dir with livepeer-gateway and livepeer-sim> <tag> [out dir]
# e.g.:  cargo build --release -p livepeer-gateway -p livepeer-sim
#        scripts/callgrind/run.sh target/release now /tmp/cg
set -e
BIN=$1; TAG=$2; OUT=${3:-.}; HERE=$(dirname "$0")
mkdir -p "$OUT"
"$BIN/livepeer-sim" --bind 127.0.0.1:18935 --plain \
  --model llm/meta-llama/Meta-Llama-3.1-8B-Instruct:capacity=100000 \
  --model text-to-image/stabilityai/sd-turbo:capacity=100000 >/dev/null 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for route in llm t2i; do
  n=2000; [ $route = t2i ] && n=1000
  rm -f "$OUT"/callgrind.out.$TAG.$route.*
  valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT"/callgrind.out.$TAG.$route.%p \
    "$BIN/livepeer-gateway" --http-addr 127.0.0.1:19935 --cli-addr 127.0.0.1:15935 \
    --rtmp-addr off --orch-addr http://127.0.0.1:18935 --orch-h2c false \
    2>"$OUT"/gateway.$TAG.$route.log &
  GW=$!
  # Ready once a job goes through (the orchestrator is in the pool); not yet counted.
  python3 "$HERE/drive.py" 19935 llm 1 0 0 --wait
  callgrind_control -i on $GW >/dev/null
  python3 "$HERE/drive.py" 19935 $route 200 $n $GW
  kill $GW; wait $GW || true
  # The dump after the counted requests is the `.1` part.
  total=$(grep -h '^summary:' "$OUT"/callgrind.out.$TAG.$route.$GW.1 | awk '{print $2}')
  echo "$route: $total instructions, $((total / n)) per request"
done
