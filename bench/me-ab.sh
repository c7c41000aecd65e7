#!/usr/bin/env bash
# GET /me of two builds side by side, beside the bare axum hello, rounds interleaved:
#   OLD=DIR NEW=DIR bench/me-ab.sh [rounds]
# Each DIR holds `gramkey` and `gramkey-bench` (release builds); each build seeds its own SQLite
# data directory (a live app) and serves it with limits on but too high to refuse. Prints
# "hello old new" requests per second per round; quote the medians.
set -euo pipefail
: "${OLD:?OLD=DIR of the earlier build}" "${NEW:?NEW=DIR of the later build}"
ROUNDS="${1:-5}"
WORK=$(mktemp -d)
"$OLD/gramkey-bench" seed "$WORK/old" 1000 >/dev/null
"$NEW/gramkey-bench" seed "$WORK/new" 1000 >/dev/null
TOKO=$(grep '^TOKEN=' "$WORK/old/bench.env" | cut -d= -f2)
TOKN=$(grep '^TOKEN=' "$WORK/new/bench.env" | cut -d= -f2)
HIGH=(--app-calls-per-user 1000000000 --user-calls 1000000000)
"$NEW/gramkey-bench" hello 127.0.0.1:19181 & P1=$!
GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/old" "$OLD/gramkey" serve --no-sandbox --listen 127.0.0.1:19182 "${HIGH[@]}" >/dev/null & P2=$!
GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/new" "$NEW/gramkey" serve --no-sandbox --listen 127.0.0.1:19183 "${HIGH[@]}" >/dev/null & P3=$!
trap 'kill $P1 $P2 $P3 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 2
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}'; }
for _ in $(seq "$ROUNDS"); do
  h=$(wrk -t2 -c64 -d8s http://127.0.0.1:19181/me | rps)
  o=$(wrk -t2 -c64 -d8s -H "Authorization: Bearer $TOKO" 'http://127.0.0.1:19182/me?fields=id,username' | rps)
  n=$(wrk -t2 -c64 -d8s -H "Authorization: Bearer $TOKN" 'http://127.0.0.1:19183/me?fields=id,username' | rps)
  echo "$h $o $n"
done
