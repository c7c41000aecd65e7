#!/usr/bin/env bash
# gramkey's memory: a node's resident set, its anonymous part (the heap) and its file-backed
# part (the binary, mapped database pages), idle and after password sign-ins.
#
# Starts `gramkey serve` with the sandbox on a fresh SQLite database, reads /proc/PID/status
# once idle, then after SIGNINS real `POST /accounts/login/` sign-ins of the sandbox's alice
# (PARALLEL at a time, each a fresh cookie session, as browsers would), a second after the
# load. Each sign-in checks an Argon2id hash (19 MiB of memory per check).
# Usage: bench/memory.sh   (BIN=DIR measures another build; SIGNINS, PARALLEL; extra
# environment such as MALLOC_MMAP_THRESHOLD_ is passed to the node)
set -euo pipefail
cd "$(dirname "$0")/.."
SIGNINS="${SIGNINS:-24}"
PARALLEL="${PARALLEL:-4}"
PORT="${PORT:-18190}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gramkey
  BIN=target/release
fi
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK" "$BIN/gramkey" serve --listen 127.0.0.1:"$PORT" \
  --public-url http://127.0.0.1:"$PORT" >"$WORK/out" 2>&1 & PID=$!
for _ in $(seq 100); do grep -q '^gramkey listening' "$WORK/out" && break; sleep 0.1; done
PASSWORD=$(awk '$1 == "alice" && $2 == "password" {print $3; exit}' "$WORK/out")
[ -n "$PASSWORD" ] || { echo "no sandbox password for alice in the node's output:" >&2; cat "$WORK/out" >&2; exit 1; }

memory() {
  awk -v what="$1" '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2}
    END {printf "%-34s RSS %6.1f MB  anonymous %6.1f MB  file-backed %6.1f MB\n", what, r/1024, a/1024, f/1024}' \
    /proc/"$PID"/status
}
sleep 1
memory "idle, sandbox seeded"
python3 - "$PORT" "$PASSWORD" "$SIGNINS" "$PARALLEL" <<'PY'
import http.cookiejar, re, sys, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, password, n, parallel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}/accounts/login/"
def sign_in(_):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(base).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "username": "alice", "password": password}).encode()
    page = opener.open(base, body)
    assert page.status == 200 and "/accounts/login/" not in page.url, "the sign-in was refused"
with ThreadPoolExecutor(parallel) as pool:
    list(pool.map(sign_in, range(n)))
PY
sleep 1
memory "after $SIGNINS sign-ins, $PARALLEL at a time"
