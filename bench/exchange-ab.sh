#!/usr/bin/env bash
# Code exchange (POST /oauth/access_token, authorization_code) of two builds, rounds interleaved:
#   OLD=DIR NEW=DIR [PG_URL=postgres://…] bench/exchange-ab.sh [rounds] [seconds]
# Each DIR holds `gramkey` and `gramkey-bench` (release builds). Each build seeds its own SQLite
# data directory with CODES codes per round (default 120000) and serves it; with PG_URL, each
# build also seeds and serves that database (emptied first, one build after the other), and
# those rounds are measured too. Prints "store old new" successful exchanges per second per
# round; quote the medians. The servers run with bench.env's secret key, as in bench/run.sh.
set -euo pipefail
: "${OLD:?OLD=DIR of the earlier build}" "${NEW:?NEW=DIR of the later build}"
ROUNDS="${1:-5}"
DURATION="${2:-5}"
CODES="${CODES:-120000}"
export WRK_THREADS=2
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; exit 1; }
ok_rps() { awk -v d="$DURATION" '/requests in/ {req=$1} /Non-2xx/ {bad=$5} END {printf "%.0f", (req-bad)/d}'; }

for b in old new; do
  bin=$OLD; [ $b = new ] && bin=$NEW
  "$bin/gramkey-bench" seed "$WORK/$b" $((ROUNDS * CODES)) >/dev/null
  split -n l/"$ROUNDS" -d -a 3 "$WORK/$b/codes.txt" "$WORK/$b/round."
done

# One round of one build on one store: its own server, its own codes.
round() { # build store round
  local bin=$OLD dir="$WORK/$1"; [ "$1" = new ] && bin=$NEW
  local db=(); [ "$2" = pg ] && { db=(--database-url "$PG_URL"); dir="$WORK/$1-pg"; }
  cp "$dir/round.$(printf %03d "$3")" "$dir/codes.txt"
  env $(cat "$dir/bench.env") GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$dir" "$bin/gramkey" "${db[@]}" serve --no-sandbox --listen 127.0.0.1:19190 >/dev/null &
  PID=$!
  wait_port 19190
  (set -a; source "$dir/bench.env"; set +a
   export BENCH_DIR="$dir" REDIRECT_URI_ENC
   REDIRECT_URI_ENC=$(python3 -c 'import os,urllib.parse;print(urllib.parse.quote(os.environ["REDIRECT_URI"],safe=""))')
   wrk -t2 -c64 -d"${DURATION}s" -s bench/lua/exchange.lua http://127.0.0.1:19190 | ok_rps)
  kill $PID; wait $PID 2>/dev/null || true; PID=""
}

cd "$(dirname "$0")/.."
for r in $(seq 0 $((ROUNDS - 1))); do
  echo "sqlite $(round old sqlite "$r") $(round new sqlite "$r")"
done
if [ -n "${PG_URL:-}" ]; then
  # The database holds one build's seed at a time: all of OLD's rounds, then NEW's.
  declare -A pg
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    psql -q "$PG_URL" -c 'DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;' >/dev/null 2>&1
    BENCH_DATABASE_URL="$PG_URL" "$bin/gramkey-bench" seed "$WORK/$b-pg" $((ROUNDS * CODES)) >/dev/null
    split -n l/"$ROUNDS" -d -a 3 "$WORK/$b-pg/codes.txt" "$WORK/$b-pg/round."
    for r in $(seq 0 $((ROUNDS - 1))); do pg[$b,$r]=$(round $b pg "$r"); done
  done
  for r in $(seq 0 $((ROUNDS - 1))); do echo "postgres ${pg[old,$r]} ${pg[new,$r]}"; done
fi
