#!/usr/bin/env bash
# Runs every ferry-bench scenario once against a release ferryd and prints each scenario's table
# and JSON line; the JSON lines also go to bench/results.jsonl. About 2 minutes on 2 cores
# after the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product ferryd >/dev/null
swift build -c release --product ferry-bench >/dev/null
bench=.build/release/ferry-bench
out=bench/results.jsonl
: > "$out"
run() {
    echo "== ferry-bench $*"
    "$bench" "$@" | tee /dev/stderr | grep '^{' >> "$out"
} 2>&1
run pubsub --messages 500000
run pubsub --messages 500000 --sync none
run pubsub --subscribers 100 --messages 20000
run pubsub --subscribers 1000 --messages 2000
run pubsub --rate 10000 --messages 100000
run disk --commits 1500 --rate 150
run resume --missed 10000
run resume --missed 1000000
run restart --stored 1000000
run idle --connections 10000
run topic-churn --names 1000000
run storm --clients 1000 --workers 2
echo "results: $out"
