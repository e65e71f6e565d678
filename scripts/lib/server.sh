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
