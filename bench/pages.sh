#!/usr/bin/env bash
# The web pages, as ratios against the bare axum hello run side by side on the same machine:
#
#   1. the developer dashboard's app page (GET /developers/apps/{id}/, signed in): the session
#      cookie decrypted, the user and the app read, the usage flushed and read, roles,
#      invitations, the last 20 audit events and callbacks read, the SVG chart drawn;
#   2. Apps and Websites (GET /accounts/manage_access/): the grants and removals read and sorted.
#
# Each measurement runs ROUNDS times (default 3); the median is reported. Needs wrk.
# Usage: bench/pages.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
THREADS="${WRK_THREADS:-2}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release -q -p gramkey -p gramkey-bench
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
ok_rps() { awk -v d="$DURATION" '/requests in/ {req=$1} /Non-2xx/ {bad=$5} END {printf "%.0f", (req-bad)/d}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

export GRAMKEY_DATA_DIR="$WORK/data" GRAMKEY_LOG=warn
echo "bench-password-1" | "$BIN/gramkey" user create --username devon --password-stdin >/dev/null
APP=$("$BIN/gramkey" app create --name Bench --redirect-uri https://app.example/cb \
  --scopes user_profile,user_media --deauthorize-url https://app.example/deauth --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$BIN/gramkey" app add-role "$APP" --user devon --role admin >/dev/null

"$BIN/gramkey-bench" hello 127.0.0.1:18181 & PIDS+=($!)
"$BIN/gramkey" serve --no-sandbox --listen 127.0.0.1:18191 >/dev/null & PIDS+=($!)
wait_port 18181; wait_port 18191

# Sign in as a browser would: the form's CSRF token, then the session cookie.
JAR="$WORK/cookies"
CSRF=$(curl -s -c "$JAR" http://127.0.0.1:18191/accounts/login/ | grep -o 'name="csrf" value="[^"]*"' | sed 's/.*value="//; s/"$//')
curl -s -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "csrf=$CSRF" --data-urlencode username=devon \
  --data-urlencode password=bench-password-1 http://127.0.0.1:18191/accounts/login/
COOKIE="gk_session=$(awk '$6 == "gk_session" {print $7}' "$JAR")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:18191/developers/apps/$APP/")" = 200 ] \
  || { echo "signing in failed" >&2; exit 1; }

hello=(); app=(); access=()
for _ in $(seq "$ROUNDS"); do
  hello+=("$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" http://127.0.0.1:18181/me | ok_rps)")
  app+=("$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H "Cookie: $COOKIE" "http://127.0.0.1:18191/developers/apps/$APP/" | ok_rps)")
  access+=("$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H "Cookie: $COOKIE" http://127.0.0.1:18191/accounts/manage_access/ | ok_rps)")
done
H=$(printf '%s\n' "${hello[@]}" | median)
A=$(printf '%s\n' "${app[@]}" | median)
S=$(printf '%s\n' "${access[@]}" | median)
echo "rounds: $ROUNDS x ${DURATION}s, wrk -t$THREADS -c$CONNS"
echo "bare axum hello        : ${hello[*]}  median $H req/s"
echo "dashboard app page     : ${app[*]}  median $A req/s  ratio $(awk -v a="$A" -v b="$H" 'BEGIN {printf "%.3f", a/b}')"
echo "Apps and Websites page : ${access[*]}  median $S req/s  ratio $(awk -v a="$S" -v b="$H" 'BEGIN {printf "%.3f", a/b}')"
