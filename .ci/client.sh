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

python3 -c 'import openapi_python_client' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check "$GENERATOR"

# shellcheck source=.ci/gateway.sh
source .ci/gateway.sh
"$BIN" registries sample --citizens 2000 --json >"$WORK/samples.json"

curl -fs "$BASE/openapi.json" -o "$WORK/openapi.json"
mkdir -p "$WORK/gen"
python3 -m openapi_python_client generate --path "$WORK/openapi.json" --output-path "$WORK/gen/lgsp_client" \
  --meta none --fail-on-warning
status=0
python3 .ci/portal_day.py "$BASE" "$STEWARD" "$AUDITOR" "$WORK/samples.json" "$WORK/gen" || status=1
if [[ $status -ne 0 ]]; then
  echo "lgsp log:"; tail -n 50 "$WORK/lgsp.log"
fi
exit $status
