# Sourced by .ci/conformance.sh and .ci/client.sh: starts the mock registries
# and a gateway on a fresh SQLite file with a steward and an auditor token,
# and stops them on exit. Set before sourcing: BIN, STEWARD, AUDITOR and the
# ports P_POP P_CIVIL P_INS P_LGSP (the national portal's mock listens on
# P_INS + 2). Sets WORK (a scratch folder) and BASE.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

P_PORTAL=$((P_INS + 2))
"$BIN" registries serve --citizens 2000 --population-port "$P_POP" --civil-status-port "$P_CIVIL" \
  --insurance-port "$P_INS" --business-port 0 --portal-port "$P_PORTAL" >"$WORK/mocks.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/lgsp.toml" <<TOML
host = "127.0.0.1"
port = $P_LGSP
workers = 2
database_url = "sqlite://$WORK/lgsp.db"
bootstrap_admin_tokens = ["steward:$STEWARD", "auditor:$AUDITOR"]
credentials_key = "$("$BIN" credentials key)"
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
[portal]
url = "http://127.0.0.1:$P_PORTAL"
username = "lgsp"
password = "portal-dev-password"
TOML
"$BIN" --config "$WORK/lgsp.toml" serve >"$WORK/lgsp.log" 2>&1 &
PIDS+=($!)
BASE=http://127.0.0.1:$P_LGSP
for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/readyz" && break; sleep 0.1; done
