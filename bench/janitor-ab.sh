#!/usr/bin/env bash
# What the node's own janitor costs GET /me, build against build:
#   SEED_DIR=DIR RATE=N [SERIES=2] bench/janitor-ab.sh BUILD_DIR...
# SEED_DIR is a seed bench/latency.sh kept (LIVE and EXPIRED tokens); RATE the GET /me rate to
# hold (e.g. half the node's maximum from latency.sh). For each series and each build in turn:
# a node on a synced copy of the seed, pinned to CPU 0, whose first janitor pass starts as it
# starts; three 10 s oha runs on CPU 1 while the pass runs, then, once it has ended, three more
# on the same node. Prints p50/p99/p99.9 in ms (share of 200s) per run, and the pass's length.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SEED_DIR:?SEED_DIR=a seed kept by bench/latency.sh}" "${RATE:?RATE=requests per second}"
SERIES="${SERIES:-2}"
WORK=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
set -a; source "$SEED_DIR/bench.env"; set +a
TOKEN=$(head -n 1 "$SEED_DIR/tokens.txt")
oha_run() {
  taskset -c 1 oha --no-tui --output-format json -z 10s -q "$RATE" -c 64 --latency-correction \
    -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:18186/me?fields=id,username' |
    python3 -c 'import json, sys
r = json.load(sys.stdin); p = r["latencyPercentiles"]; s = r["statusCodeDistribution"]
print("%.2f/%.2f/%.2f(%.3f)" % (p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3, s.get("200", 0) / max(1, sum(s.values()))))'
}
for _ in $(seq "$SERIES"); do
  for bin in "$@"; do
    rm -rf "$WORK/node"; mkdir "$WORK/node"; cp "$SEED_DIR"/gramkey.db* "$WORK/node/"; sync
    GRAMKEY_LOG=warn,gramkey_server::ops=info GRAMKEY_DATA_DIR="$WORK/node" taskset -c 0 "$bin/gramkey" serve --no-sandbox \
      --listen 127.0.0.1:18186 --app-calls-per-user 1000000000 --user-calls 1000000000 >"$WORK/log" 2>&1 & PID=$!
    t0=$(date +%s.%N)
    for _ in $(seq 300); do grep -q '^gramkey listening' "$WORK/log" && break; sleep 0.05; done
    during=""; for _ in 1 2 3; do during+="$(oha_run) "; done
    grep -q 'janitor purged' "$WORK/log" && during+="(the pass had ended) "
    for _ in $(seq 18000); do grep -q 'janitor purged' "$WORK/log" && break; sleep 0.1; done
    pass=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$(date +%s.%N)" "$t0")
    after=""; for _ in 1 2 3; do after+="$(oha_run) "; done
    kill $PID; wait $PID 2>/dev/null || true; PID=
    echo "$bin: during $during| pass ${pass} s | after $after"
  done
done
