#!/usr/bin/env bash
# GET /me through a node whose budgets live in Redis (--redis-url), as budgets stand on a fresh
# start and as they stand after an hour of traffic: every budget of the app and its user
# holding the hour's sixty one-minute buckets. Side by side for each build given.
#   REDIS_DB=15 bench/redis-hour.sh DIR [DIR ...]
# Each DIR holds `gramkey` and `gramkey-bench` (release builds). The Redis database REDIS_DB
# (default 15) of 127.0.0.1:6379 is emptied. Needs wrk and redis-cli. Prints, per build,
# three 5 s runs of each state (quote the medians).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/redis-hour.sh DIR [DIR ...]" >&2; exit 2; }
DB="${REDIS_DB:-15}"
WORK=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}'; }
for BIN in "$@"; do
  rm -rf "$WORK/data"
  "$BIN/gramkey-bench" seed "$WORK/data" 1000 >/dev/null
  TOKEN=$(grep '^TOKEN=' "$WORK/data/bench.env" | cut -d= -f2)
  redis-cli -n "$DB" FLUSHDB >/dev/null
  GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/data" "$BIN/gramkey" serve --no-sandbox \
    --listen 127.0.0.1:19191 --redis-url "redis://127.0.0.1:6379/$DB" \
    --app-calls-per-user 1000000000 --user-calls 1000000000 >/dev/null &
  PID=$!
  sleep 2
  me() { wrk -t2 -c64 -d5s -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:19191/me?fields=id,username' | rps; }
  fresh="$(me) $(me) $(me)"
  # The hour's other 59 minutes, one call each, in every budget the calls made; the sums the
  # scripts keep (fields -1 and -2) are dropped, so the next call counts the buckets again.
  cur=$(( $(date +%s) / 60 ))
  for k in $(redis-cli -n "$DB" --scan --pattern 'gk:app:*'); do
    args=()
    for i in $(seq 1 59); do args+=($((cur - i)) 1); done
    redis-cli -n "$DB" HSET "$k" "${args[@]}" >/dev/null
    redis-cli -n "$DB" HDEL "$k" -1 -2 >/dev/null
  done
  hour="$(me) $(me) $(me)"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  echo "$BIN: fresh budgets $fresh; after an hour $hour"
done
