#!/usr/bin/env bash
# make fuzz-controlplane: schemathesis against the control plane's own OpenAPI document, on a
# fresh server over HTTPS, with an Owner's token; fails on any server error (5xx).
#   FUZZ_EXAMPLES (default 25) examples per operation; FUZZ_DATABASE_URL to fuzz on PostgreSQL.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$top/.venv/bin:$PATH
examples=${FUZZ_EXAMPLES:-25}
work=$(mktemp -d)
server=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
db=()
[ -n "${FUZZ_DATABASE_URL:-}" ] && db=(--database-url "$FUZZ_DATABASE_URL")
data=$work/data

init=$(arc-controlplane init --data-dir "$data" "${db[@]}" --port "$port" --json)
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
tenant=$(field "$init" tenantId)
subscription=$(field "$init" subscriptionId)
owner=$(arc-controlplane sp create --data-dir "$data" "${db[@]}" --name fuzz-owner --role Owner \
  --scope "/subscriptions/$subscription" --json)

arc-controlplane serve --data-dir "$data" "${db[@]}" --port "$port" >"$work/serve.log" 2>&1 &
server=$!
url=https://127.0.0.1:$port
ca=$data/pki/ca.pem
for _ in $(seq 100); do
  curl -sf --cacert "$ca" "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
# The secret goes to curl on standard input, not on its command line.
token=$(printf 'grant_type=client_credentials&client_id=%s&client_secret=%s&scope=https%%3A%%2F%%2Fmanagement.azure.com%%2F.default' \
    "$(field "$owner" clientId)" "$(field "$owner" clientSecret)" \
  | curl -sf --cacert "$ca" --data-binary @- "$url/$tenant/oauth2/v2.0/token" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

echo "fuzz-controlplane: $examples examples per operation against $url (${FUZZ_DATABASE_URL:+PostgreSQL}${FUZZ_DATABASE_URL:-SQLite})"
status=0
# schemathesis keeps its example database and reports in the working directory: use ours.
# One worker: with two threads, Python 3.11.7's ast module now and then raises "AST constructor
# recursion depth mismatch" inside hypothesis (CPython gh-106905, fixed in 3.11.8), a crash of
# the tool that has nothing to do with the server.
cd "$work"
st run "$url/openapi.json" --tls-verify "$ca" --checks not_a_server_error \
  --max-examples "$examples" --seed 20261122 --workers 1 --no-color \
  -H "Authorization: Bearer $token" || status=$?
if grep -q "Traceback" "$work/serve.log"; then
  echo "fuzz-controlplane: the server logged a traceback:" >&2
  grep -A20 Traceback "$work/serve.log" | head -60 >&2
  status=1
fi
exit $status
