#!/usr/bin/env bash
# A portal built on a generated client: openapi-python-client (from PyPI)
# generates `lgsp_client` from the running gateway's /openapi.json, failing on
# any warning (an operation or answer it would leave out), and .ci/portal_day.py
# drives a portal's day with it: forms, a prefill of each shipped form, coverage,
# an exchange, a citizen's access log; with the admin tokens, a partner and its
# key registered, the audit trail searched, verified and exported.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/lgsp}
P_POP=17401 P_CIVIL=17402 P_INS=17403 P_LGSP=17490
STEWARD=steward-token-for-the-client
AUDITOR=auditor-token-for-the-client
GENERATOR="openapi-python-client==0.29.1"

command -v openapi-python-client >/dev/null 2>&1 ||
  python3 -m pip install --quiet --disable-pip-version-check "$GENERATOR"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" registries serve --citizens 2000 --population-port $P_POP --civil-status-port $P_CIVIL \
  --insurance-port $P_INS >"$WORK/mocks.log" 2>&1 &
PIDS+=($!)
"$BIN" registries sample --citizens 2000 --json >"$WORK/samples.json"
cat >"$WORK/lgsp.toml" <<TOML
host = "127.0.0.1"
port = $P_LGSP
workers = 2
database_url = "sqlite://$WORK/lgsp.db"
bootstrap_admin_tokens = ["steward:$STEWARD", "auditor:$AUDITOR"]
[log]
level = "error"
[upstreams.population]
url = "http://127.0.0.1:$P_POP"
token = "population-dev-token"
[upstreams.civil_status]
url = "http://127.0.0.1:$P_CIVIL"
token = "civil-status-dev-token"
[upstreams.insurance]
url = "http://127.0.0.1:$P_INS"
token = "insurance-dev-token"
TOML
"$BIN" --config "$WORK/lgsp.toml" serve >"$WORK/lgsp.log" 2>&1 &
PIDS+=($!)
BASE=http://127.0.0.1:$P_LGSP
for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/readyz" && break; sleep 0.1; done

curl -fs "$BASE/openapi.json" -o "$WORK/openapi.json"
mkdir -p "$WORK/gen"
openapi-python-client generate --path "$WORK/openapi.json" --output-path "$WORK/gen/lgsp_client" \
  --meta none --fail-on-warning
status=0
python3 .ci/portal_day.py "$BASE" "$STEWARD" "$AUDITOR" "$WORK/samples.json" "$WORK/gen" || status=1
if [[ $status -ne 0 ]]; then
  echo "lgsp log:"; tail -n 50 "$WORK/lgsp.log"
fi
exit $status
