#!/usr/bin/env bash
# Writes crates/gramkey-cli/link-order.txt: the functions a node runs, hottest first, for the
# linker to lay out side by side (`--symbol-ordering-file`, see crates/gramkey-cli/build.rs).
#
# A node runs about 3 MB of the binary's 17 MB of code, but those functions lie scattered
# across it. The kernel maps code in blocks of 64 KB around each page fault, so a scattered
# working set keeps most of the binary resident (idle RSS 20 MB, 12 MB of it code). Laid out
# together, the same code takes a few MB (BENCHMARKS.md, "Idle memory").
#
# How: a release build starts under `valgrind --tool=callgrind` with the sandbox, and a client
# goes through what a node serves most: pages, a password sign-in and consent, code exchange,
# long-lived exchange and refresh, app tokens, debug_token, introspection, the Graph, Basic
# Display and v1 reads. Every function that ran is listed, by instructions run, most first.
#
# Run it again after a dependency update or a large change: names that no longer exist are
# skipped by the linker, so a stale list costs memory, never correctness.
# Usage: bench/link-order.sh   (needs valgrind; BIN=DIR profiles another release build)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-18195}"
OUT=crates/gramkey-cli/link-order.txt
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gramkey
  BIN=target/release
fi
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

GRAMKEY_LOG=warn GRAMKEY_DATA_DIR="$WORK/data" valgrind --tool=callgrind --dump-instr=yes \
  --callgrind-out-file="$WORK/callgrind.out" "$BIN/gramkey" serve --listen 127.0.0.1:"$PORT" \
  --public-url http://127.0.0.1:"$PORT" >"$WORK/out" 2>"$WORK/err" & PID=$!
for _ in $(seq 600); do grep -q '^gramkey listening' "$WORK/out" && break; sleep 0.1; done
grep -q '^gramkey listening' "$WORK/out" || { cat "$WORK/out" "$WORK/err" >&2; exit 1; }

python3 - "$PORT" "$WORK/out" <<'PY'
import html, json, re, sys, urllib.error, urllib.parse, urllib.request, http.cookiejar
port, out = sys.argv[1], open(sys.argv[2]).read()
base = f"http://127.0.0.1:{port}"
client_id = re.search(r"client_id:\s+(\d+)", out).group(1)
secret = re.search(r"client_secret:\s+(\w+)", out).group(1)
password = re.search(r"alice\s+password (\S+)", out).group(1)
authorize = re.search(r"(http://\S+/oauth/authorize\?\S+)", out).group(1)
redirect_uri = urllib.parse.parse_qs(urllib.parse.urlparse(authorize).query)["redirect_uri"][0]

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a):
        return None
jar = http.cookiejar.CookieJar()
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

def call(url, data=None, opener=None, ok=(200,)):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        r = (opener or browser).open(url if url.startswith("http") else base + url, body)
        status, headers, text = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, e.headers, e.read().decode()
    assert status in ok, f"{url}: {status} {text[:200]}"
    return headers, text

def form(page):
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    return {k: html.unescape(v) for k, v in fields.items()}

for path in ("/", "/healthz", "/readyz", "/static/gramkey.css", "/accounts/login/"):
    call(path)
_, page = call(authorize)
fields = form(page)
fields.update(username="alice", password=password)
headers, page = call("/oauth/authorize/login", fields, ok=(200, 302, 303))
if "Location" in headers:
    _, page = call(headers["Location"])
fields = form(page)
fields["decision"] = "allow"
headers, _ = call("/oauth/authorize/consent", fields, ok=(302, 303))
code = urllib.parse.parse_qs(urllib.parse.urlparse(headers["Location"]).query)["code"][0]
app = {"client_id": client_id, "client_secret": secret}
_, t = call("/oauth/access_token", dict(app, grant_type="authorization_code",
                                        redirect_uri=redirect_uri, code=code))
short = json.loads(t)["access_token"]
_, t = call(f"/access_token?grant_type=ig_exchange_token&client_secret={secret}&access_token={short}")
token = json.loads(t)["access_token"]
_, t = call(f"/oauth/access_token?client_id={client_id}&client_secret={secret}&grant_type=client_credentials")
app_token = json.loads(t)["access_token"]
for _ in range(20):
    call(f"/me?fields=id,username,account_type,media_count&access_token={token}")
    call(f"/v21.0/me?fields=id,username&access_token={token}")
    _, t = call(f"/me/media?fields=id,caption,media_type,media_url,permalink,timestamp&access_token={token}")
    for m in json.loads(t)["data"][:2]:
        call(f"/{m['id']}?fields=id,media_type,media_url&access_token={token}")
        call(f"/{m['id']}/comments?access_token={token}", ok=(200, 400, 403))
    call(f"/v1/users/self?access_token={token}", ok=(200, 400))
    call(f"/v1/users/self/media/recent?access_token={token}", ok=(200, 400))
    call(f"/debug_token?input_token={token}&access_token={app_token}")
    call("/oauth/introspect", dict(app, token=token))
    call(f"/me?access_token=not-a-token", ok=(400,))
call(f"/refresh_access_token?grant_type=ig_refresh_token&access_token={token}", ok=(200, 400))
call("/accounts/manage_access/")
call("/developers/apps/")
call("/oauth/revoke", dict(app, token=token))
PY

kill -INT "$PID"; wait "$PID" || true; PID=
python3 - "$BIN/gramkey" "$WORK/callgrind.out" "$OUT" <<'PY'
import bisect, collections, os, re, subprocess, sys
binary, profile, out = sys.argv[1:]
syms = []
for line in subprocess.run(["nm", "--defined-only", "-S", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        syms.append((int(p[0], 16), int(p[1], 16), p[3]))
syms.sort()
starts = [s[0] for s in syms]
# Callgrind's cost lines: an address (absolute 0x..., or +n/-n from the last one, or *) and
# the instructions run there. Only lines inside the binary's own object count.
binary = os.path.realpath(binary)
names, cost, obj, addr, after_call = {}, collections.Counter(), None, 0, False
for line in open(profile):
    if line.startswith("calls="):
        after_call = True  # the next cost line is the callee's inclusive cost
        continue
    if line.startswith(("ob=", "cob=")):
        m = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
        if m.group(2):
            names[m.group(1)] = m.group(2)
        if line.startswith("ob="):
            obj = names.get(m.group(1))
        continue
    if not line[:1] or line[0] not in "0123456789+-*":
        continue
    f = line.split()
    if f[0].startswith("0x"):
        addr = int(f[0], 16)
    elif f[0][0] in "+-":
        addr += int(f[0], 0)
    inclusive, after_call = after_call, False
    if obj == binary:
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < syms[i][0] + max(syms[i][1], 1):
            cost[syms[i][2]] += 0 if inclusive else int(f[-1])
ordered = [name for name, _ in cost.most_common()]
with open(out, "w") as f:
    f.write("\n".join(ordered) + "\n")
size = {n: s for _, s, n in syms}
print(f"{out}: {len(ordered)} functions, {sum(size[n] for n in ordered) / 1e6:.1f} MB of code")
PY
