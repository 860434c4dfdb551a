"""A portal's day, through a client generated from lgsp's own /openapi.json.

Run by .ci/client.sh after openapi-python-client has generated the package
`lgsp_client` from the running gateway's document. Every call goes through
the generated code and every answer is parsed by the generated models, so a
document that does not say what lgsp sends fails here as it would fail a
portal team.

    python3 portal_day.py BASE STEWARD AUDITOR SAMPLES.json CLIENT_PARENT_DIR
"""

import json
import sys

BASE, STEWARD, AUDITOR, SAMPLES, CLIENT_DIR = sys.argv[1:6]
sys.path.insert(0, CLIENT_DIR)

from lgsp_client import AuthenticatedClient  # noqa: E402
from lgsp_client.api.auditors import export_audit, search_audit, verify_audit  # noqa: E402
from lgsp_client.api.partners import (  # noqa: E402
    access_log,
    exchange,
    form_coverage,
    get_form,
    list_adapters,
    list_forms,
    prefill,
)
from lgsp_client.api.stewards import create_key, create_partner, get_partner  # noqa: E402
from lgsp_client.models import (  # noqa: E402
    AuditExport,
    AuditPage,
    AuditVerification,
    ExchangeAnswer,
    ExchangeBody,
    FormCoverage,
    KeyRequest,
    NewKey,
    Partner,
    PartnerInput,
    PartnerKind,
    Policy,
    PrefillAnswer,
    PrefillRequest,
)
from lgsp_client.types import UNSET  # noqa: E402

samples = json.load(open(SAMPLES))
# The citizen a portal typically prefills each shipped form for.
TYPICAL = {
    "ct01": "adult_with_household",
    "tk1_ts": "child_under_6",
    "birth_registration": "parent_of_newborn",
    "death_registration": "adult_with_household",
    "health_card_reissue": "adult_with_household",
    "marital_status_certificate": "married",
}
steps = 0


def ok(what, response, model, status=200):
    """The call answered `status` and its body parsed as `model`."""
    global steps
    if response.status_code != status:
        sys.exit(f"{what}: HTTP {int(response.status_code)}: {response.content[:500]!r}")
    if not isinstance(response.parsed, model):
        sys.exit(f"{what}: the answer did not parse as {model.__name__}: {response.parsed!r}")
    steps += 1
    return response.parsed


def client(token):
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=True)


steward = client(STEWARD)
auditor = client(AUDITOR)

# The morning: a steward registers the portal and gives it a key.
partner_id = "000.00.77.H29"
policy = Policy(forms=["*"], purposes=["*"], operations=["*"], elements=["*"], access_log=True)
body = PartnerInput(
    id=partner_id,
    name="Cổng dịch vụ công tỉnh (generated client)",
    kind=PartnerKind.STATE_AGENCY,
    policy=policy,
    rate_per_minute=60_000,
    burst=1_000,
)
ok("register the portal", create_partner.sync_detailed(client=steward, body=body), Partner, 201)
ok("read the portal back", get_partner.sync_detailed(partner_id, client=steward), Partner)
key = ok("make its key", create_key.sync_detailed(partner_id, client=steward, body=KeyRequest(label="portal")), NewKey, 201)
portal = client(key.key)

# The day: forms, a prefill of each for a typical citizen, coverage.
forms = ok("list forms", list_forms.sync_detailed(client=portal), list)
ids = sorted(f.id for f in forms)
missing = sorted(set(TYPICAL) - set(ids))
if missing:
    sys.exit(f"shipped forms not listed: {missing}")
for form in forms:
    definition = get_form.sync_detailed(form.id, client=portal)
    ok(f"form {form.id}", definition, type(definition.parsed))
    if definition.parsed is None or definition.parsed.version != form.version:
        sys.exit(f"form {form.id}: the definition's version does not match the listing")
    citizen = samples[TYPICAL.get(form.id, "adult_with_household")][0]
    request = PrefillRequest(form=form.id, citizen_id=citizen, purpose=form.purposes[0])
    answer = ok(f"prefill {form.id}", prefill.sync_detailed(client=portal, body=request), PrefillAnswer)
    filled = 0
    for field in answer.fields:
        if field.status == "prefilled":
            if field.value is UNSET or field.value is None or not isinstance(field.source, str):
                sys.exit(f"{form.id}.{field.id}: prefilled without a value and its source")
            filled += 1
        elif field.value is not UNSET:
            sys.exit(f"{form.id}.{field.id}: {field.status} but carries a value")
    if filled != answer.coverage.prefilled:
        sys.exit(f"{form.id}: {filled} fields prefilled, coverage says {answer.coverage.prefilled}")
    if answer.coverage.cut < 0.2:
        sys.exit(f"{form.id}: cuts {answer.coverage.cut:.0%} of what the citizen declares, under 20%")
    print(f"prefill {form.id:28} {filled:2}/{answer.coverage.declarable} fields, sources "
          + ", ".join(f"{s.operation}={s.status}" for s in answer.sources))
    coverage = ok(f"coverage {form.id}", form_coverage.sync_detailed(form.id, client=portal), FormCoverage)
    if coverage.measured is None or coverage.measured.prefills < 1:
        sys.exit(f"coverage {form.id}: the prefill just made is not measured")

# An exchange with the population registry, and what the portal may call.
adapters = ok("list adapters", list_adapters.sync_detailed(client=portal), list)
if not any(op.name == "citizen" for a in adapters if a.id == "population" for op in a.operations):
    sys.exit("population.citizen is not listed")
citizen = samples["adult_with_household"][0]
request = ExchangeBody.from_dict({"citizen_id": citizen})
answer = ok(
    "exchange population.citizen",
    exchange.sync_detailed("population", "citizen", client=portal, body=request, x_purpose="residence_change"),
    ExchangeAnswer,
)
if answer.elements.additional_properties.get("citizen_id") != citizen:
    sys.exit(f"the exchange answered for another citizen: {answer.elements.to_dict()}")

# The citizen looks at who read their data.
log = ok("access log", access_log.sync_detailed(citizen, client=portal), list)
if not any(entry.agency_id == partner_id and entry.action == "exchange" for entry in log):
    sys.exit("the access log does not show the exchange")

# The evening: the auditor searches and verifies the trail, and exports a page.
page = ok("search the trail", search_audit.sync_detailed(client=auditor, partner_id=partner_id), AuditPage)
if len(page.items) < len(forms) + 1:
    sys.exit(f"the trail holds {len(page.items)} records of the portal, expected at least {len(forms) + 1}")
check = ok("verify the trail", verify_audit.sync_detailed(client=auditor), AuditVerification)
if not check.intact:
    sys.exit(f"the trail is broken at {check.broken_at}: {check.reason}")
export = ok("export a page", export_audit.sync_detailed(client=auditor, from_=1, limit=50), AuditExport)
if not export.records or export.records[0].seq != 1:
    sys.exit("the export does not start at record 1")

print(f"portal day: {steps} calls through the generated client, every answer parsed")
