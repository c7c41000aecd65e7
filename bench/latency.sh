#!/usr/bin/env bash
# gramkey's latency at a constant load, what the janitor costs it, and the heap with a million
# tokens in use (issue 17, item 5). One SQLite node, on a database seeded by `gramkey-bench seed`
# with LIVE extra access tokens and EXPIRED tokens past retention.
#
# The servers run on CPU 0 and the load generator on CPU 1 (taskset), so the generator's own
# work does not take the node's CPU in bursts (unpinned on two cores, the generator's share
# decided the tail more than the node did).
#   1. The node's most `GET /me` per second, on a copy of the database whose expired tokens
#      `gramkey janitor` purged first (flat out; its time is reported): oha as a closed loop
#      (-c64), median of ROUNDS runs. Beside it, bare axum's
#      (`gramkey-bench hello`), pinned the same way.
#   2. `GET /me` at each of LOADS % of that rate (default "50 80") with oha as an open-loop
#      generator: requests are sent on a fixed schedule, and each one's latency counts from when
#      it was due (--latency-correction), so a stall shows in the percentiles instead of slowing
#      the sender. p50, p99 and p99.9 of each run; medians reported. Side by side, bare axum at
#      the same share of its own maximum: what the machine gives a server as loaded. Beside each,
#      how busy CPU 1 was (oha, and the loopback's softirq work): near its limit, oha sends late.
#   3. The janitor: a fresh copy of the database with its EXPIRED tokens, and a node whose first
#      janitor pass starts as it starts. While the pass runs, oha sends `GET /me` at the first of
#      LOADS, ROUNDS runs of DURATION. Reported: how long the pass took, and p99 against
#      step 2's.
#   4. The heap: wrk sends `GET /me` with each of the LIVE tokens in turn (bench/lua/me_tokens.lua)
#      until every one has been read, then the node's resident set, its anonymous part (heap)
#      and its file-backed part (the binary and the mapped database pages).
#
# Needs wrk and oha (`cargo install oha`). Usage: bench/latency.sh [seconds-per-run]
# (BIN=DIR to measure other binaries; SEED_DIR to keep the seeded database for the next run;
# ROUNDS, LOADS, LIVE, EXPIRED)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
LOADS="${LOADS:-50 80}"
LIVE="${LIVE:-1000000}"
EXPIRED="${EXPIRED:-1000000}"
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

# Seeding two million tokens takes minutes: SEED_DIR keeps the seed for the next run.
SEED_DIR="${SEED_DIR:-$WORK/seed}"
if [ ! -f "$SEED_DIR/bench.env" ]; then
  echo "seeding $LIVE live and $EXPIRED expired tokens into $SEED_DIR ..." >&2
  LIVE_TOKENS=$LIVE EXPIRED_TOKENS=$EXPIRED "$BIN/gramkey-bench" seed "$SEED_DIR" 1
fi
set -a; source "$SEED_DIR/bench.env"; set +a
export BENCH_DIR="$SEED_DIR"
# The seed's own token lives an hour; the LIVE ones six: a kept seed serves for six hours.
[ "$LIVE" -gt 0 ] && TOKEN=$(head -n 1 "$SEED_DIR/tokens.txt")
URL='http://127.0.0.1:18186/me?fields=id,username'
SERVER=(taskset -c 0); LOADGEN=(taskset -c 1)
"${SERVER[@]}" "$BIN/gramkey-bench" hello 127.0.0.1:18181 & HELLO=$!

# Starts a node on a copy of the seeded database; returns once it listens. Its log says when
# the janitor's first pass has finished. With `purged`, `gramkey janitor` purges the copy first.
start() {
  rm -rf "$WORK/node"; mkdir "$WORK/node"
  cp "$SEED_DIR"/gramkey.db* "$WORK/node/"
  # The copy's pages on disk first: otherwise the node's first checkpoint flushes the whole
  # copied file (hundreds of megabytes), on the node's core, and that is what gets measured.
  sync
  if [ "${1:-}" = purged ]; then
    local t0; t0=$(date +%s.%N)
    GRAMKEY_DATA_DIR="$WORK/node" "${SERVER[@]}" "$BIN/gramkey" --data-dir "$WORK/node" janitor --once >&2
    CLI_PURGE=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$t0")
  fi
  GRAMKEY_LOG=warn,gramkey_server::ops=info GRAMKEY_DATA_DIR="$WORK/node" "${SERVER[@]}" "$BIN/gramkey" serve --no-sandbox \
    --listen 127.0.0.1:18186 --app-calls-per-user 1000000000 --user-calls 1000000000 >"$WORK/log" 2>&1 & PID=$!
  STARTED=$(date +%s.%N)
  for _ in $(seq 300); do grep -q '^gramkey listening' "$WORK/log" && return 0; sleep 0.05; done
  echo "the node did not start:" >&2; cat "$WORK/log" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
purged() { grep -q 'janitor purged' "$WORK/log"; }
wait_purged() { for _ in $(seq 36000); do purged && return 0; sleep 0.05; done; echo "no janitor pass finished in 30 minutes" >&2; exit 1; }
# CPU 1's busy and total time so far (jiffies): the load generator's core.
loadgen_cpu() { awk '$1 == "cpu1" {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
# oha at RATE req/s for $1 seconds against $2 (default the node): "p50 p99 p99.9" in
# milliseconds, the share of 200s, and how busy CPU 1, the generator's core, was (%, all its
# work): a generator near its core's limit sends late, and its lateness counts as latency.
oha_run() {
  local before report
  before=$(loadgen_cpu)
  report=$("${LOADGEN[@]}" oha --no-tui --output-format json -z "$1s" -q "$RATE" -c 64 --latency-correction \
    -H "Authorization: Bearer $TOKEN" "${2:-$URL}")
  python3 -c 'import json, sys
r = json.loads(sys.argv[1]); p = r["latencyPercentiles"]; s = r["statusCodeDistribution"]
ok = s.get("200", 0) / max(1, sum(s.values()))
b0, t0, b1, t1 = map(int, sys.argv[2:])
print("%.2f %.2f %.2f %.4f %.0f" % (p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3, ok, 100 * (b1 - b0) / max(1, t1 - t0)))' \
    "$report" $before $(loadgen_cpu)
}
oha_max() {
  "${LOADGEN[@]}" oha --no-tui --output-format json -z "${DURATION}s" -c 64 -H "Authorization: Bearer $TOKEN" "${1:-$URL}" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); s = r["statusCodeDistribution"]
print(round(r["summary"]["requestsPerSec"] * s.get("200", 0) / max(1, sum(s.values()))))'
}
memory() {
  awk -v what="$1" '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2}
    END {printf "%-44s RSS %6.1f MB  anonymous %6.1f MB  file-backed %6.1f MB\n", what, r/1024, a/1024, f/1024}' \
    /proc/"$PID"/status
}

start purged
maxes=(); hmaxes=()
for _ in $(seq "$ROUNDS"); do
  maxes+=("$(oha_max)")
  hmaxes+=("$(oha_max http://127.0.0.1:18181/me)")
done
MAX=$(printf '%s\n' "${maxes[@]}" | median)
HMAX=$(printf '%s\n' "${hmaxes[@]}" | median)
declare -A quiet hello
for load in $LOADS; do
  for _ in $(seq "$ROUNDS"); do
    RATE=$((MAX * load / 100)); quiet[$load]+="$(oha_run "$DURATION")"$'\n'
    RATE=$((HMAX * load / 100)); hello[$load]+="$(oha_run "$DURATION" http://127.0.0.1:18181/me)"$'\n'
  done
done
memory "after the purge, $LIVE tokens not yet read"
# Each token once at least, in runs of 30 s, each starting where the last one ended: the
# caches (bounded) keep the most recent. A token's first use from an address is also a write
# (alerts note its networks), so this goes at the store's write rate.
used=0
while [ "$used" -lt "$LIVE" ]; do
  n=$(START=$used WRK_THREADS=1 "${LOADGEN[@]}" wrk -t1 -c64 -d30s -s bench/lua/me_tokens.lua "http://127.0.0.1:18186" |
    awk '/requests in/ {print $1}')
  used=$((used + n))
done
memory "after GET /me with each of $LIVE tokens"
stop

JLOAD=${LOADS%% *}
RATE=$((MAX * JLOAD / 100))
during=()
start
for _ in $(seq "$ROUNDS"); do during+=("$(oha_run "$DURATION")"); done
purged && echo "note: the pass had ended before the last run did" >&2
wait_purged
PASS=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$STARTED")
grep 'janitor purged' "$WORK/log" | tail -1 | sed 's/^/  /' >&2
stop

col() { awk -v c="$1" 'NF {print $c}' | median; }
echo "rounds: $ROUNDS x ${DURATION}s; GET /me, SQLite node, $LIVE live and $EXPIRED expired tokens seeded"
echo "max rate (oha -c64, closed loop) : gramkey ${maxes[*]}  median $MAX req/s; bare axum ${hmaxes[*]}  median $HMAX req/s (ratio $(awk -v a="$MAX" -v b="$HMAX" 'BEGIN {printf "%.2f", a/b}'))"
echo "constant rate (oha --latency-correction), medians: p50 / p99 / p99.9 ms (share of 200s; CPU 1 busy)"
for load in $LOADS; do
  echo "  $load%: gramkey at $((MAX * load / 100)) req/s, bare axum at $((HMAX * load / 100))"
  for who in quiet hello; do
    declare -n runs=$who
    printf '    %-10s: %s / %s / %s ms (%s; %s %%)\n' "$([ $who = quiet ] && echo gramkey || echo 'bare axum')" \
      "$(col 1 <<<"${runs[$load]}")" "$(col 2 <<<"${runs[$load]}")" "$(col 3 <<<"${runs[$load]}")" "$(col 4 <<<"${runs[$load]}")" \
      "$(col 5 <<<"${runs[$load]}")"
  done
done
QP99=$(col 2 <<<"${quiet[$JLOAD]}")
DP99=$(printf '%s\n' "${during[@]}" | col 2)
echo "  janitor running, $JLOAD%: p99 $DP99 ms ($(awk -v a="$DP99" -v b="$QP99" 'BEGIN {printf "%+.0f%%", (a/b-1)*100}') against quiet); runs: $(printf '[%s] ' "${during[@]}")"
echo "purging $EXPIRED expired tokens: the node's janitor (paced) ${PASS} s, until logged; \`gramkey janitor\` (flat out) ${CLI_PURGE} s"
