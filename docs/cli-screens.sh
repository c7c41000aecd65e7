#!/usr/bin/env bash
# Drives `gramkey auth` in a real terminal (tmux) against a fresh sandbox server, and writes
# what the terminal showed to docs/cli-screens.md. The person's part in the browser (signing
# in on /device and allowing) is played by a few lines of Python, as a person would click.
#
#   cargo build && bash docs/cli-screens.sh            # GRAMKEY=path/to/gramkey to choose
#
# Needs tmux and python3. Nothing is left behind but docs/cli-screens.md.
set -euo pipefail
cd "$(dirname "$0")/.."
gramkey="$(realpath "${GRAMKEY:-target/debug/gramkey}")"
out="$PWD/docs/cli-screens.md"
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
session="gramkey-screens-$$"
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$gramkey" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 50); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
client_id=$(sed -n 's/.*client_id: *\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
secret=$(sed -n 's/.*client_secret: *\([0-9a-f]*\).*/\1/p' "$work/serve.log" | head -1)
password=$(sed -n 's/^ *alice *password \([^ ]*\).*/\1/p' "$work/serve.log" | head -1)

# The person at the browser: signs in on the way to /device, enters nothing (the link has the
# code), allows.
cat >"$work/approve.py" <<'EOF'
import http.cookiejar, re, sys, urllib.parse, urllib.request
complete, user, password = sys.argv[1:4]
jar = http.cookiejar.CookieJar()
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
def hidden(html):
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
def post(url, form):
    return web.open(url, urllib.parse.urlencode(form).encode()).read().decode()
page = web.open(complete)  # -> the sign-in page, with ?next= back here
html = page.read().decode()
form = hidden(html) | {"username": user, "password": password}
entry = post(page.geturl(), form)  # signed in, back on /device with the code filled in
code = urllib.parse.parse_qs(urllib.parse.urlparse(complete).query)["user_code"][0]
consent = post(urllib.parse.urljoin(complete, "/device"), hidden(entry) | {"user_code": code})
done = post(urllib.parse.urljoin(complete, "/device"), hidden(consent) | {"decision": "allow"})
print("approved" if "Device connected" in done else "not approved")
EOF

tmux new-session -d -s "$session" -x 110 -y 40 "env -i HOME=$work PATH=/usr/bin:/bin TERM=xterm bash --norc --noprofile"
send() { tmux send-keys -t "$session" "$1" Enter; }
send "PS1='\$ '; export PATH=$(dirname "$gramkey"):\$PATH GRAMKEY_VAULT_KEY=\$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \\n') GRAMKEY_CLIENT_SECRET=$secret; clear"
sleep 0.5
tmux clear-history -t "$session"
wait_for() {  # text on the screen, then a moment for the rest
  for _ in $(seq 100); do tmux capture-pane -p -t "$session" | grep -q -- "$1" && break; sleep 0.2; done
  sleep 0.3
}
screen() { tmux capture-pane -p -J -S - -t "$session" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'; }

# 1. Sign in with a device code: the terminal shows the code, the person enters it elsewhere.
send "gramkey auth login --host $base --client-id $client_id --device"
wait_for "Waiting up to"
complete=$(tmux capture-pane -p -J -t "$session" | sed -n 's/.*(or open \(http[^,]*\),.*/\1/p' | head -1)
python3 "$work/approve.py" "$complete" alice "$password" >/dev/null
wait_for "Signed in as"
device=$(screen)
tmux clear-history -t "$session"; send clear; sleep 0.3

# 2. No display: the browser flow says so, and takes the pasted URL.
send "gramkey auth login --host $base --client-id $client_id --alias alice-laptop"
wait_for "Waiting up to"
headless=$(screen)
tmux send-keys -t "$session" C-c
sleep 0.3; tmux clear-history -t "$session"; send clear; sleep 0.3

# 3. Status, the token, a refresh that is not due, the token revoked elsewhere, and what the
# CLI then says.
send "gramkey auth status; echo exit=\$?"
wait_for "^exit="
send "gramkey auth refresh --if-due --threshold 61d; echo exit=\$?"
wait_for "exit=0"
send "curl -s -u $client_id:\$GRAMKEY_CLIENT_SECRET -d token=\$(gramkey auth token) $base/oauth/revoke; echo revoked elsewhere"
wait_for "^revoked elsewhere"
send "gramkey auth me; echo exit=\$?"
wait_for "exit=4"
send "gramkey auth token >/dev/null; echo exit=\$?"
sleep 0.5
send "gramkey auth status; echo exit=\$?"
sleep 0.8
state=$(screen)
tmux clear-history -t "$session"; send clear; sleep 0.3

# 4. A server that is not there.
send "GRAMKEY_TOKEN=IGQVJexample GRAMKEY_HOST=http://127.0.0.1:9 gramkey auth me; echo exit=\$?"
wait_for "^exit="
unreachable=$(screen)

{
  echo "# \`gramkey auth\` in a terminal"
  echo
  echo "Captured from tmux by \`docs/cli-screens.sh\` against a fresh sandbox (\`gramkey serve\`)."
  echo "The person's part on \`/device\` (sign in, allow) was played by a script, as a person would"
  echo "click. Regenerate with \`cargo build && bash docs/cli-screens.sh\`."
  echo
  echo "## Signing in with a device code (\`--device\`)"
  echo
  echo '```text'; echo "$device"; echo '```'
  echo
  echo "## The browser flow on a machine without a display"
  echo
  echo "Nothing is opened; the CLI says why and waits for the pasted URL (stopped here with Ctrl-C)."
  echo
  echo '```text'; echo "$headless"; echo '```'
  echo
  echo "## Honest state: a token revoked elsewhere"
  echo
  echo '```text'; echo "$state"; echo '```'
  echo
  echo "## A server that does not answer"
  echo
  echo '```text'; echo "$unreachable"; echo '```'
} >"$out"
echo "wrote $out"
