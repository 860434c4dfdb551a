#!/usr/bin/env bash
# API conformance: schemathesis (from PyPI) generates requests from lgsp's own
# /openapi.json and checks that none is answered with a server error and that
# every response matches the documented schema. Runs the given lgsp binary
# (default target/debug/lgsp) against the mock registries on a fresh SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/lgsp}
EXAMPLES=${LGSP_CONFORMANCE_EXAMPLES:-40}
P_POP=17301 P_CIVIL=17302 P_INS=17303 P_LGSP=17390
STEWARD=steward-token-for-conformance
AUDITOR=auditor-token-for-conformance

command -v schemathesis >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5"

# shellcheck source=.ci/gateway.sh
source .ci/gateway.sh
curl -fs -o /dev/null "$BASE/admin/v1/partners" -H "Authorization: Bearer $STEWARD" -H 'Content-Type: application/json' \
  -d '{"id":"000.00.98.H29","name":"Conformance portal","kind":"state_agency","rate_per_minute":1000000,"burst":100000,
       "policy":{"forms":["*"],"purposes":["*"],"operations":["*"],"elements":["*"],"access_log":true}}'
KEY=$(curl -fs "$BASE/admin/v1/partners/000.00.98.H29/keys" -H "Authorization: Bearer $STEWARD" \
  -H 'Content-Type: application/json' -d '{"label":"conformance"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

st() { # label, then schemathesis options
  local label=$1
  shift
  printf -- '--- %s\n' "$label"
  # One worker: with two threads, Python 3.11 can fail building an AST in
  # one of them ("AST constructor recursion depth mismatch", CPython
  # gh-106905), which schemathesis reports as an error of the operation.
  schemathesis --config-file .ci/schemathesis.toml run "$BASE/openapi.json" --checks "${LGSP_CONFORMANCE_CHECKS:-all}" \
    --max-examples "$EXAMPLES" --seed 2025 --workers 1 --suppress-health-check all --warnings off "$@"
}
status=0
st "partner API" --include-path-regex '^/v1/' -H "Authorization: Bearer $KEY" || status=1
st "steward API" --include-path-regex '^/admin/v1/(adapters|forms|partners|tokens|elements|credentials|flows|reconciliation)' -H "Authorization: Bearer $STEWARD" || status=1
st "auditor API" --include-path-regex '^/admin/v1/audit' -H "Authorization: Bearer $AUDITOR" || status=1
st "operations" --include-path-regex '^/(healthz|readyz|metrics)' || status=1
if [[ $status -ne 0 ]]; then
  echo "lgsp log:"; tail -n 50 "$WORK/lgsp.log"
fi
exit $status
