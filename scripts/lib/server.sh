# Shared by the benchmark scripts: start a release `palisade serve` in the background and
# learn its address. Sets $server (pid) and $addr (http://host:port); logs go to $work.
# Usage: start_server DATA_DIR [extra env assignments…]   (SERVER_BIN: the binary, release by default)
start_server() {
  local data_dir="$1"; shift
  # A previous server's line must not be mistaken for this one's.
  rm -f "$work/err"
  env "$@" "${SERVER_BIN:-target/release/palisade}" serve --listen 127.0.0.1:0 --data-dir "$data_dir" \
    >"$work/log.jsonl" 2>"$work/err" &
  server=$!
  for _ in $(seq 1 300); do grep -q 'listening on' "$work/err" 2>/dev/null && break; sleep 0.1; done
  addr=$(grep -o 'http://[0-9.:]*' "$work/err") || { cat "$work/err" >&2; return 1; }
}

stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}

print_machine() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
}

# Follows the verification link mailed to EMAIL (read from DATA_DIR's outbox, where mail
# goes without SMTP), so the account may sign in: until its address is verified, nobody
# signs in to an account. Usage: verify_email EMAIL DATA_DIR
verify_email() {
  local token=""
  for _ in $(seq 1 100); do
    token=$(python3 - "$1" "$2/outbox" <<'PY'
import glob, re, sys
for path in sorted(glob.glob(sys.argv[2] + "/*.eml")):
    text = open(path, encoding="utf-8").read().replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
    if re.search(r"^To: " + re.escape(sys.argv[1]) + r"\s*$", text, re.M | re.I):
        found = re.search(r"verify-email\?token=([A-Za-z0-9_.-]+)", text)
        if found:
            print(found.group(1))
PY
)
    [ -n "$token" ] && break
    sleep 0.05
  done
  [ -n "$token" ] || { echo "no verification mail to $1" >&2; return 1; }
  curl -fsS -o /dev/null -H 'content-type: application/json' \
    -d "{\"token\":\"$(tail -n1 <<<"$token")\"}" "$addr/api/v1/auth/verify-email"
}
