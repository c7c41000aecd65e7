#!/usr/bin/env bash
# gramkey's latency at a constant load, what the janitor costs it, and the heap with a million
# tokens in use (issue 17, item 5). One SQLite node, on a database seeded by `gramkey-bench seed`
# with LIVE extra access tokens and EXPIRED tokens past retention.
#
#   1. The node's most `GET /me` per second, once its first janitor pass has purged the expired
#      tokens: oha as a closed loop (-c64), median of ROUNDS runs. The load generator shares
#      the machine's cores, so the maximum is measured with the same generator as the latencies.
#   2. `GET /me` at each of LOADS % of that rate (default "50 80") with oha as an open-loop
#      generator: requests are sent on a fixed schedule, and each one's latency counts from when
#      it was due (--latency-correction), so a stall shows in the percentiles instead of slowing
#      the sender. p50, p99 and p99.9 of each run; medians reported. Side by side, at the same
#      rate: bare axum (`gramkey-bench hello`), what the generator and the machine alone give.
#   3. The janitor: for each of ROUNDS rounds, a fresh copy of the database with its EXPIRED
#      tokens, and a node whose first janitor pass starts as it starts. oha sends `GET /me` at
#      the first of LOADS for JANITOR_SECS while the pass runs. Reported: how long the pass took
#      and p99 against step 2's.
#   4. The heap: wrk sends `GET /me` with each of the LIVE tokens in turn (bench/lua/me_tokens.lua)
#      until every one has been read, then the node's resident set, its anonymous part (heap)
#      and its file-backed part (the binary and the mapped database pages).
#
# Needs wrk and oha (`cargo install oha`). Usage: bench/latency.sh [seconds-per-run]
# (BIN=DIR to measure other binaries; ROUNDS, LOADS, LIVE, EXPIRED, JANITOR_SECS)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
LOADS="${LOADS:-50 80}"
LIVE="${LIVE:-1000000}"
EXPIRED="${EXPIRED:-1000000}"
JANITOR_SECS="${JANITOR_SECS:-5}"
export WRK_THREADS=2
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v oha >/dev/null || { echo "oha is needed: cargo install oha" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gramkey -p gramkey-bench
  BIN=target/release
fi
WORK=$(mktemp -d)
PID=
HELLO=
cleanup() { for p in $PID $HELLO; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "seeding $LIVE live and $EXPIRED expired tokens ..." >&2
LIVE_TOKENS=$LIVE EXPIRED_TOKENS=$EXPIRED "$BIN/gramkey-bench" seed "$WORK/seed" 1
set -a; source "$WORK/seed/bench.env"; set +a
export BENCH_DIR="$WORK/seed"
URL='http://127.0.0.1:18186/me?fields=id,username'
"$BIN/gramkey-bench" hello 127.0.0.1:18181 & HELLO=$!

# Starts a node on a copy of the seeded database; returns once it listens. Its log says when
# the janitor's first pass has finished.
start() {
  rm -rf "$WORK/node"; mkdir "$WORK/node"
  cp "$WORK/seed/gramkey.db" "$WORK/node/"
  GRAMKEY_LOG=warn,gramkey_server::ops=info GRAMKEY_DATA_DIR="$WORK/node" "$BIN/gramkey" serve --no-sandbox \
    --listen 127.0.0.1:18186 --app-calls-per-user 1000000000 --user-calls 1000000000 >"$WORK/log" 2>&1 & PID=$!
  STARTED=$(date +%s.%N)
  for _ in $(seq 300); do grep -q '^gramkey listening' "$WORK/log" && return 0; sleep 0.05; done
  echo "the node did not start:" >&2; cat "$WORK/log" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
purged() { grep -q 'janitor purged' "$WORK/log"; }
wait_purged() { for _ in $(seq 1200); do purged && return 0; sleep 0.05; done; echo "no janitor pass finished" >&2; exit 1; }
# oha at RATE req/s for $1 seconds against $2 (default the node): "p50 p99 p99.9" in
# milliseconds, and the share of 200s.
oha_run() {
  oha --no-tui --output-format json -z "$1s" -q "$RATE" -c 64 --latency-correction \
    -H "Authorization: Bearer $TOKEN" "${2:-$URL}" |
    python3 -c 'import json, sys
r = json.load(sys.stdin); p = r["latencyPercentiles"]; s = r["statusCodeDistribution"]
ok = s.get("200", 0) / max(1, sum(s.values()))
print("%.2f %.2f %.2f %.4f" % (p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3, ok))'
}
oha_max() {
  oha --no-tui --output-format json -z "${DURATION}s" -c 64 -H "Authorization: Bearer $TOKEN" "$URL" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); s = r["statusCodeDistribution"]
print(round(r["summary"]["requestsPerSec"] * s.get("200", 0) / max(1, sum(s.values()))))'
}
memory() {
  awk -v what="$1" '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2}
    END {printf "%-44s RSS %6.1f MB  anonymous %6.1f MB  file-backed %6.1f MB\n", what, r/1024, a/1024, f/1024}' \
    /proc/"$PID"/status
}

start
wait_purged
maxes=()
for _ in $(seq "$ROUNDS"); do maxes+=("$(oha_max)"); done
MAX=$(printf '%s\n' "${maxes[@]}" | median)
declare -A quiet hello
for load in $LOADS; do
  RATE=$((MAX * load / 100))
  for _ in $(seq "$ROUNDS"); do
    quiet[$load]+="$(oha_run "$DURATION")"$'\n'
    hello[$load]+="$(oha_run "$DURATION" http://127.0.0.1:18181/me)"$'\n'
  done
done
memory "after the purge, $LIVE tokens not yet read"
# Each token once at least: the cache (bounded) holds the most recent.
SECS=$(( LIVE / (MAX / 3) + 5 ))
wrk -t2 -c64 -d"${SECS}s" -s bench/lua/me_tokens.lua "http://127.0.0.1:18186" >"$WORK/wrk-live"
memory "after GET /me with each of $LIVE tokens"
grep -E 'requests in|Non-2xx' "$WORK/wrk-live" | sed 's/^ */  wrk: /'
stop

JLOAD=${LOADS%% *}
RATE=$((MAX * JLOAD / 100))
during=(); passes=()
for _ in $(seq "$ROUNDS"); do
  start
  during+=("$(oha_run "$JANITOR_SECS")")
  purged && echo "note: the pass ended within the ${JANITOR_SECS}s window" >&2
  wait_purged
  passes+=("$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$STARTED")")
  grep 'janitor purged' "$WORK/log" | tail -1 | sed 's/^/  /' >&2
  stop
done

col() { awk -v c="$1" 'NF {print $c}' | median; }
echo "rounds: $ROUNDS x ${DURATION}s; GET /me, SQLite node, $LIVE live and $EXPIRED expired tokens seeded"
echo "max rate (oha -c64, closed loop) : ${maxes[*]}  median $MAX req/s"
echo "constant rate (oha --latency-correction), medians: p50 / p99 / p99.9 ms (share of 200s)"
for load in $LOADS; do
  echo "  $load% = $((MAX * load / 100)) req/s"
  for who in quiet hello; do
    declare -n runs=$who
    printf '    %-22s: %s / %s / %s ms (%s)\n' "$([ $who = quiet ] && echo gramkey || echo 'bare axum, same rate')" \
      "$(col 1 <<<"${runs[$load]}")" "$(col 2 <<<"${runs[$load]}")" "$(col 3 <<<"${runs[$load]}")" "$(col 4 <<<"${runs[$load]}")"
  done
done
QP99=$(col 2 <<<"${quiet[$JLOAD]}")
DP99=$(printf '%s\n' "${during[@]}" | col 2)
echo "  janitor running, $JLOAD%: p99 $DP99 ms ($(awk -v a="$DP99" -v b="$QP99" 'BEGIN {printf "%+.0f%%", (a/b-1)*100}') against quiet); runs: $(printf '[%s] ' "${during[@]}")"
echo "janitor pass (purging $EXPIRED): ${passes[*]} s (until logged; the polling adds up to 50 ms)"
