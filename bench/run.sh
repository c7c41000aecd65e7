#!/usr/bin/env bash
# gramkey benchmarks, as ratios against a baseline run side by side on the same machine.
#
#   1. GET /me with a valid token vs. a bare axum JSON handler (bench `hello`).
#   2. Code exchange (POST /oauth/access_token) on SQLite with synchronous=FULL: successful
#      exchanges per second, each a durable write, vs. node oidc-provider issuing
#      client_credentials tokens from memory (bench/oidc-provider).
#   3. GET /me/media?fields=…&limit=25 (a page of 25 of 200 media, with paging links) vs. the
#      same bare axum handler.
#   4. The cost of rate limiting and its watching (budgets, usage headers, insights, alerts) on
#      GET /me: the same server with them on (limits too high to refuse) and off
#      (--no-rate-limits), side by side. Token issuance (2 and 4) includes its audit events.
#   5. The refresh_token grant (rotation: one access and one refresh token per request, the old
#      one marked used, committed durably), against the same baseline.
#   7. The client_credentials grant (an app token and its audit event, committed durably),
#      against the same baseline: the like-for-like comparison with oidc-provider.
#   8. RFC 7662 introspection (POST /oauth/introspect) of a live token by its app, against
#      oidc-provider introspecting one of its own client_credentials tokens. Each side's token is
#      checked active before and after its run: an inactive answer is a 200 too.
#   9. With PG_URL set (a PostgreSQL database the script empties), 1, 2, 5, 7 and 8 again on a node
#      whose store is that database, in the same run: the single PostgreSQL node beside the
#      SQLite one. Its cache is on (the default on PostgreSQL). The database server's CPU is
#      on the same machine. PG_ARGS adds flags to that node (e.g. --cache-ttl 0).
#
# Each measurement runs ROUNDS times (default 3); the median is reported. Needs wrk and node
# (and psql with PG_URL).
# Usage: bench/run.sh [seconds-per-run]    (BIN=DIR to measure other binaries; SEED=DIR to seed
# with another build's gramkey-bench, e.g. when BIN's cannot seed PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
export WRK_THREADS="${WRK_THREADS:-2}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v node >/dev/null || { echo "node is needed for the oidc-provider baseline" >&2; exit 1; }
[ -d bench/oidc-provider/node_modules ] || npm install --silent --no-package-lock --prefix bench/oidc-provider

# BIN=DIR measures binaries built elsewhere (an earlier commit, for a before/after comparison).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gramkey -p gramkey-bench
  BIN=target/release
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# Successful requests per second from wrk's output (non-2xx answers are not counted).
ok_rps() {
  awk -v d="$DURATION" '/requests in/ {req=$1} /Non-2xx/ {bad=$5} END {printf "%.0f", (req-bad)/d}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

CODES_PER_ROUND="${CODES_PER_ROUND:-300000}"
SEED="${SEED:-$BIN}"
echo "seeding $((ROUNDS * CODES_PER_ROUND)) codes ..." >&2
"$SEED/gramkey-bench" seed "$WORK/data" $((ROUNDS * CODES_PER_ROUND))
if [ -n "${PG_URL:-}" ]; then
  psql -q "$PG_URL" -c 'DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;' >/dev/null
  BENCH_DATABASE_URL="$PG_URL" "$SEED/gramkey-bench" seed "$WORK/pg" $((ROUNDS * CODES_PER_ROUND))
  # Statistics for what was just loaded, as autovacuum would gather them later: without them
  # the planner scans the token table for the janitor's first batch (1.4 s, measured).
  psql -q "$PG_URL" -c 'ANALYZE'
  split -n l/"$ROUNDS" -d "$WORK/pg/codes.txt" "$WORK/pg/round."
  split -n l/"$ROUNDS" -d "$WORK/pg/refresh.txt" "$WORK/pg/rround."
fi
set -a; source "$WORK/data/bench.env"; set +a
export BENCH_DIR="$WORK/data"
export REDIRECT_URI_ENC=$(python3 -c 'import os,urllib.parse;print(urllib.parse.quote(os.environ["REDIRECT_URI"],safe=""))')

"$BIN/gramkey-bench" hello 127.0.0.1:18181 & PIDS+=($!)
# Limits on, but too high to refuse: wrk must measure the checks, not the refusals.
HIGH=(--app-calls-per-user 1000000000 --user-calls 1000000000)
GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/data" "$BIN/gramkey" serve --no-sandbox --listen 127.0.0.1:18182 "${HIGH[@]}" >/dev/null & PIDS+=($!)
GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/data" "$BIN/gramkey" serve --no-sandbox --listen 127.0.0.1:18184 --no-rate-limits >/dev/null & PIDS+=($!)
PORT=18183 node bench/oidc-provider/server.mjs >/dev/null 2>&1 & PIDS+=($!)
wait_port 18181; wait_port 18182; wait_port 18183; wait_port 18184
if [ -n "${PG_URL:-}" ]; then
  GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/pg" "$BIN/gramkey" --database-url "$PG_URL" serve --no-sandbox --listen 127.0.0.1:18185 "${HIGH[@]}" ${PG_ARGS:-} >/dev/null & PIDS+=($!)
  wait_port 18185
fi
# Introspection on PORT of TOKEN at PATH by the client ID / SECRET: successes per second. The
# token must be active before and after the run, or the rate is of "inactive" answers.
OIDC_SECRET=bench-secret-0123456789abcdef0123456789abcdef
introspect() {
  local port=$1 token=$2 path=$3 id=$4 secret=$5 rate
  active() {
    curl -sf --max-time 5 -d "token=$token&client_id=$id&client_secret=$secret" "http://127.0.0.1:$port$path" |
      grep -q '"active":true' || { echo "!!! the token introspected on port $port is not active" >&2; exit 1; }
  }
  active
  rate=$(INTROSPECT_TOKEN=$token INTROSPECT_PATH=$path CLIENT_ID=$id CLIENT_SECRET=$secret \
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/introspect.lua "http://127.0.0.1:$port" | ok_rps)
  active
  echo "$rate"
}
# wrk with the PostgreSQL seed's client, codes and token.
pg_wrk() { env $(cat "$WORK/pg/bench.env") BENCH_DIR="$WORK/pg" wrk "$@"; }

# The code files are split per round so no round replays another's codes.
split -n l/"$ROUNDS" -d "$WORK/data/codes.txt" "$WORK/data/round."
split -n l/"$ROUNDS" -d "$WORK/data/refresh.txt" "$WORK/data/rround."
MEDIA_PATH='/me/media?fields=id,caption,media_type,media_url,permalink,timestamp&limit=25'
hello=(); me=(); meoff=(); media=(); exch=(); oidc=(); refr=(); cc=(); intro=(); ointro=()
pgme=(); pgexch=(); pgrefr=(); pgcc=(); pgintro=()
for r in $(seq 0 $((ROUNDS - 1))); do
  hello+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" http://127.0.0.1:18181/me | ok_rps)")
  me+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:18182/me?fields=id,username' | ok_rps)")
  meoff+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:18184/me?fields=id,username' | ok_rps)")
  media+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18182$MEDIA_PATH" | ok_rps)")
  cp "$WORK/data/round.0$r" "$WORK/data/codes.txt"
  oidc+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/client_credentials.lua http://127.0.0.1:18183 | ok_rps)")
  cp "$WORK/data/rround.0$r" "$WORK/data/refresh.txt"
  refr+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/refresh.lua http://127.0.0.1:18182 | ok_rps)")
  exch+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/exchange.lua http://127.0.0.1:18182 | ok_rps)")
  cc+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/app_token.lua http://127.0.0.1:18182 | ok_rps)")
  intro+=("$(introspect 18182 "$TOKEN" /oauth/introspect "$CLIENT_ID" "$CLIENT_SECRET")")
  # oidc-provider's tokens live ten minutes: a fresh one each round.
  OIDC_TOKEN=$(curl -sf -d "grant_type=client_credentials&client_id=bench&client_secret=$OIDC_SECRET" \
    http://127.0.0.1:18183/token | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  ointro+=("$(introspect 18183 "$OIDC_TOKEN" /token/introspection bench "$OIDC_SECRET")")
  if [ -n "${PG_URL:-}" ]; then
    PG_TOKEN=$(grep '^TOKEN=' "$WORK/pg/bench.env" | cut -d= -f2)
    pgme+=("$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $PG_TOKEN" 'http://127.0.0.1:18185/me?fields=id,username' | ok_rps)")
    cp "$WORK/pg/round.0$r" "$WORK/pg/codes.txt"
    pgexch+=("$(pg_wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/exchange.lua http://127.0.0.1:18185 | ok_rps)")
    cp "$WORK/pg/rround.0$r" "$WORK/pg/refresh.txt"
    pgrefr+=("$(pg_wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/refresh.lua http://127.0.0.1:18185 | ok_rps)")
    pgcc+=("$(pg_wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -s bench/lua/app_token.lua http://127.0.0.1:18185 | ok_rps)")
    pgintro+=("$(set -a; source "$WORK/pg/bench.env"; introspect 18185 "$PG_TOKEN" /oauth/introspect "$CLIENT_ID" "$CLIENT_SECRET")")
  fi
done

# A round that redeems every code (or refresh token) it was given measured the supply, not the
# server: say so rather than report the figure as a rate.
ran_dry() {
  local what=$1; shift
  for v in "$@"; do
    if [ $((v * DURATION)) -ge $((CODES_PER_ROUND * 99 / 100)) ]; then
      echo "!!! $what used up its $CODES_PER_ROUND per round: not a rate; raise CODES_PER_ROUND" >&2
      return
    fi
  done
}
ran_dry "code exchange SQLite" "${exch[@]}"
ran_dry "refresh_token grant" "${refr[@]}"
if [ -n "${PG_URL:-}" ]; then
  ran_dry "code exchange PG" "${pgexch[@]}"
  ran_dry "refresh_token PG" "${pgrefr[@]}"
fi

H=$(printf '%s\n' "${hello[@]}" | median)
M=$(printf '%s\n' "${me[@]}" | median)
MO=$(printf '%s\n' "${meoff[@]}" | median)
E=$(printf '%s\n' "${exch[@]}" | median)
MM=$(printf '%s\n' "${media[@]}" | median)
O=$(printf '%s\n' "${oidc[@]}" | median)
R=$(printf '%s\n' "${refr[@]}" | median)
C=$(printf '%s\n' "${cc[@]}" | median)
I=$(printf '%s\n' "${intro[@]}" | median)
OI=$(printf '%s\n' "${ointro[@]}" | median)
echo "rounds: $ROUNDS x ${DURATION}s, wrk -t$WRK_THREADS -c$CONNS"
echo "bare axum hello      : ${hello[*]}  median $H req/s"
echo "GET /me (SQLite)     : ${me[*]}  median $M req/s  ratio $(awk -v a="$M" -v b="$H" 'BEGIN {printf "%.2f", a/b}')"
echo "GET /me, limits off : ${meoff[*]}  median $MO req/s  limits on/off ratio $(awk -v a="$M" -v b="$MO" 'BEGIN {printf "%.2f", a/b}')"
echo "GET /me/media x25    : ${media[*]}  median $MM req/s  ratio $(awk -v a="$MM" -v b="$H" 'BEGIN {printf "%.2f", a/b}')"
echo "oidc-provider cc     : ${oidc[*]}  median $O ok/s"
echo "code exchange SQLite : ${exch[*]}  median $E ok/s  ratio to oidc-provider $(awk -v a="$E" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
echo "refresh_token grant  : ${refr[*]}  median $R ok/s  ratio to oidc-provider $(awk -v a="$R" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
echo "client_credentials   : ${cc[*]}  median $C ok/s  ratio to oidc-provider $(awk -v a="$C" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
echo "oidc-provider intro. : ${ointro[*]}  median $OI ok/s"
echo "introspection SQLite : ${intro[*]}  median $I ok/s  ratio to oidc-provider's $(awk -v a="$I" -v b="$OI" 'BEGIN {printf "%.2f", a/b}')"
if [ -n "${PG_URL:-}" ]; then
  PM=$(printf '%s\n' "${pgme[@]}" | median)
  PE=$(printf '%s\n' "${pgexch[@]}" | median)
  PR=$(printf '%s\n' "${pgrefr[@]}" | median)
  PC=$(printf '%s\n' "${pgcc[@]}" | median)
  PI=$(printf '%s\n' "${pgintro[@]}" | median)
  echo "GET /me (PostgreSQL) : ${pgme[*]}  median $PM req/s  ratio $(awk -v a="$PM" -v b="$H" 'BEGIN {printf "%.2f", a/b}'), to SQLite $(awk -v a="$PM" -v b="$M" 'BEGIN {printf "%.2f", a/b}')"
  echo "code exchange PG     : ${pgexch[*]}  median $PE ok/s  ratio to oidc-provider $(awk -v a="$PE" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
  echo "refresh_token PG     : ${pgrefr[*]}  median $PR ok/s  ratio to oidc-provider $(awk -v a="$PR" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
  echo "client_credentials PG: ${pgcc[*]}  median $PC ok/s  ratio to oidc-provider $(awk -v a="$PC" -v b="$O" 'BEGIN {printf "%.2f", a/b}')"
  echo "introspection PG     : ${pgintro[*]}  median $PI ok/s  ratio to oidc-provider's $(awk -v a="$PI" -v b="$OI" 'BEGIN {printf "%.2f", a/b}'), to SQLite $(awk -v a="$PI" -v b="$I" 'BEGIN {printf "%.2f", a/b}')"
fi
