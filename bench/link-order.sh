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
#
# `bench/link-order.sh --check BINARY` (what CI runs on its release build) fails if BINARY's
# code is not laid out in the list's order, or if fewer than half the listed functions are in
# it while the compiler is the one the list was made with. The names carry Cargo's hashes of
# each crate's version, features and compiler: after another compiler it only warns.
# Usage: bench/link-order.sh   (needs valgrind; BIN=DIR profiles another release build)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-18195}"
OUT=crates/gramkey-cli/link-order.txt
if [ "${1:-}" = --check ]; then
  exec python3 - "${2:?--check BINARY}" "$OUT" "$(rustc --version)" <<'PY'
import re, subprocess, sys
binary, order, rustc = sys.argv[1:]
lines = open(order).read().splitlines()
made_with = re.search(r"profiled with (rustc [^;]*);", lines[0])
listed = [n for n in lines if n and not n.startswith("#")]
addr = {}
for line in subprocess.run(["nm", "--defined-only", "--no-sort", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    p = line.split(" ", 2)
    if len(p) == 3 and p[1] in "tTwW":
        addr.setdefault(p[2], int(p[0], 16))
found = [n for n in listed if n in addr]
print(f"link order: {len(found)} of the {len(listed)} functions listed are in the binary")
head = [addr[n] for n in found[:200]]
rising = sum(a < b for a, b in zip(head, head[1:]))
if len(head) < 2 or rising < 0.9 * (len(head) - 1):
    sys.exit("!!! the release build's code is not laid out in link-order.txt's order"
             " (did crates/gramkey-cli/build.rs warn that the linker refused the list?)")
if 2 * len(found) < len(listed):
    if made_with and made_with.group(1) == rustc:
        sys.exit("!!! crates/gramkey-cli/link-order.txt is stale: run bench/link-order.sh")
    print(f"!!! link-order.txt was made with {made_with.group(1) if made_with else 'another compiler'},"
          f" this is {rustc}: idle memory is higher until bench/link-order.sh is run")
PY
fi
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
python3 - "$BIN/gramkey" "$WORK/callgrind.out" "$OUT" "$(rustc --version)" <<'PY'
import bisect, collections, os, re, subprocess, sys
binary, profile, out, rustc = sys.argv[1:]
binary = os.path.realpath(binary)
def symbols(*flags):
    # nm without sorting lists the symbol table in its own order, so two runs line up.
    lines = subprocess.run(["nm", "--defined-only", "--no-sort", "-S", *flags, binary],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return [line.split(" ", 3) for line in lines]
syms = [(int(p[0], 16), int(p[1], 16), p[3]) for p in symbols()
        if len(p) == 4 and p[2] in "tTwW"]
syms.sort()
starts = [s[0] for s in syms]
# Callgrind's cost lines: the positions (an address, absolute 0x..., +n/-n from the last one,
# or *; then a line number) and the events' counts. Only lines in the binary's own object count.
names, cost, obj, addr, after_call = {}, collections.Counter(), None, 0, False
positions, ir = 1, 1
for line in open(profile):
    if line.startswith("positions:"):
        positions = len(line.split()) - 1
    elif line.startswith("events:"):
        ir = positions + line.split()[1:].index("Ir")
    elif line.startswith("calls="):
        after_call = True  # the next cost line is the callee's inclusive cost, not this line's
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
    if obj == binary and not inclusive and len(f) > ir:
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < syms[i][0] + max(syms[i][1], 1):
            cost[syms[i][2]] += int(f[ir])
ordered = [name for name, _ in cost.most_common()]
# Code chosen by CPU feature at run time that valgrind's CPU does not offer: SHA-256 with the
# SHA extensions (valgrind runs the portable one instead). Listed after what ran.
mangled = symbols()
for plain, name in zip(symbols("--demangle"), mangled):
    if len(name) == 4 and name[2] in "tT" and plain[3].startswith("sha2::sha256::x86::") \
            and name[3] not in cost:
        ordered.append(name[3])
if len(ordered) < 1000:
    sys.exit(f"only {len(ordered)} functions of {binary} ran: is it a release build with symbols?")
with open(out + ".new", "w") as f:
    f.write(f"# {len(ordered)} functions, most run first, profiled with {rustc}; bench/link-order.sh\n")
    f.write("\n".join(ordered) + "\n")
os.replace(out + ".new", out)
size = {n: s for _, s, n in syms}
print(f"{out}: {len(ordered)} functions, {sum(size[n] for n in ordered) / 1e6:.1f} MB of code")
PY
