#!/usr/bin/env bash
# Three gramkey nodes on one PostgreSQL database and one Redis, behind HAProxy (Debian's), on
# this one machine, beside a bare axum baseline in the same run:
#
#   1. GET /me through the balancer, and on one node alone (the others idle);
#   2. code exchange through the balancer (durable, each a PostgreSQL transaction);
#   3. revocation propagation: a token revoked on one node, after the others cached it, until
#      both others refuse it (p50/p99 over TRIALS, default 200), from the revoking call.
#
# Everything shares the machine's cores: nodes, PostgreSQL, Redis, HAProxy and wrk. On a 2-core
# machine this measures coordination, not scale. Needs wrk, haproxy, psql and redis.
# Usage: PG_URL=postgres://…/DB (a database the script empties) REDIS_URL=redis://… \
#        bench/cluster.sh [seconds-per-run]    (BIN=DIR to measure other binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
TRIALS="${TRIALS:-200}"
export WRK_THREADS="${WRK_THREADS:-2}"
: "${PG_URL:?set PG_URL to a PostgreSQL database the script may empty}"
: "${REDIS_URL:?set REDIS_URL}"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || { echo "haproxy is needed: apt-get install haproxy" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gramkey -p gramkey-bench
  BIN=target/release
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
ok_rps() { awk -v d="$DURATION" '/requests in/ {req=$1} /Non-2xx/ {bad=$5} END {printf "%.0f", (req-bad)/d}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

psql -q "$PG_URL" -c 'DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;' >/dev/null
CODES_PER_ROUND="${CODES_PER_ROUND:-50000}"
echo "seeding $((ROUNDS * CODES_PER_ROUND)) codes ..." >&2
BENCH_DATABASE_URL="$PG_URL" "$BIN/gramkey-bench" seed "$WORK/data" $((ROUNDS * CODES_PER_ROUND))
# Statistics for what was just loaded (autovacuum is off on this machine's server): without
# them the planner expects a third of the tokens to have expired and scans the whole table for
# the janitor's first batch instead of using tokens_by_expiry (1.4 s, measured).
psql -q "$PG_URL" -c 'ANALYZE'
set -a; source "$WORK/data/bench.env"; set +a
export BENCH_DIR="$WORK/data"
export REDIRECT_URI_ENC=$(python3 -c 'import os,urllib.parse;print(urllib.parse.quote(os.environ["REDIRECT_URI"],safe=""))')
split -n l/"$ROUNDS" -d "$WORK/data/codes.txt" "$WORK/data/round."

"$BIN/gramkey-bench" hello 127.0.0.1:18181 & PIDS+=($!)
# Limits on and shared through Redis, but too high to refuse.
HIGH=(--app-calls-per-user 1000000000 --user-calls 1000000000)
for port in 18191 18192 18193; do
  GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/data" "$BIN/gramkey" --database-url "$PG_URL" serve --no-sandbox \
    --listen 127.0.0.1:$port --redis-url "$REDIS_URL" "${HIGH[@]}" >/dev/null & PIDS+=($!)
done
cat > "$WORK/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend gramkey
  bind 127.0.0.1:18190
  default_backend nodes
backend nodes
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 1s fall 2 rise 1
  server a 127.0.0.1:18191 check
  server b 127.0.0.1:18192 check
  server c 127.0.0.1:18193 check
CFG
"$HAPROXY" -db -f "$WORK/haproxy.cfg" >/dev/null 2>&1 & PIDS+=($!)
wait_port 18181; wait_port 18191; wait_port 18192; wait_port 18193; wait_port 18190

hello=(); lbme=(); oneme=(); lbexch=()
for r in $(seq 0 $((ROUNDS - 1))); do
  hello+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" http://127.0.0.1:18181/me | ok_rps)")
  lbme+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:18190/me?fields=id,username' | ok_rps)")
  oneme+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:18191/me?fields=id,username' | ok_rps)")
  cp "$WORK/data/round.0$r" "$WORK/data/codes.txt"
  lbexch+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/exchange.lua http://127.0.0.1:18190 | ok_rps)")
done
H=$(printf '%s\n' "${hello[@]}" | median)
L=$(printf '%s\n' "${lbme[@]}" | median)
N=$(printf '%s\n' "${oneme[@]}" | median)
E=$(printf '%s\n' "${lbexch[@]}" | median)
echo "rounds: $ROUNDS x ${DURATION}s, wrk -t$WRK_THREADS -c$CONNS; 3 nodes, PostgreSQL, Redis, HAProxy on $(nproc) cores"
echo "bare axum hello            : ${hello[*]}  median $H req/s"
echo "GET /me, 3 nodes via HAProxy: ${lbme[*]}  median $L req/s  ratio $(awk -v a="$L" -v b="$H" 'BEGIN {printf "%.2f", a/b}')"
echo "GET /me, one node alone    : ${oneme[*]}  median $N req/s  ratio $(awk -v a="$N" -v b="$H" 'BEGIN {printf "%.2f", a/b}')"
echo "code exchange via HAProxy  : ${lbexch[*]}  median $E ok/s"
"$BIN/gramkey-bench" propagation "$TRIALS" "$CLIENT_ID" "$CLIENT_SECRET" 127.0.0.1:18191 127.0.0.1:18192 127.0.0.1:18193
