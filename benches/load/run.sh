#!/usr/bin/env bash
# The load-test scenario (see BENCHMARKS.md). On a fresh machine it installs wrk
# and nginx from the distribution's packages, builds lgsp (release profile), starts
# the mock registries, nginx as a plain reverse proxy, a reverse proxy built
# from lgsp's own HTTP parts and doing nothing else (benches/load/stack_floor.rs),
# lgsp with its audit trail on SQLite and a second lgsp on PostgreSQL, drives
# each with wrk, and prints one table with the ratios to nginx and lgsp's memory.
#
# Settings (environment):
#   LGSP_LOAD_DURATION     seconds per scenario               (default 10)
#   LGSP_LOAD_CONNECTIONS  concurrent connections             (default 64)
#   LGSP_LOAD_CITIZENS     size of the mock population        (default 100000)
#   LGSP_LOAD_POSTGRES_URL server for scenario 5              (default postgres://postgres@127.0.0.1:5432;
#                                                              empty skips it)
#   LGSP_LOAD_OUT          where the table is also written    (default target/load/latest.md)
#   LGSP_LOAD_PROFILE      the cargo profile built            (default release; perf: line tables for profilers)
#   LGSP_LOAD_DOSSIERS     0: no linked dossiers filed during scenario 6 (default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

DURATION=${LGSP_LOAD_DURATION:-10}
CONNS=${LGSP_LOAD_CONNECTIONS:-64}
CITIZENS=${LGSP_LOAD_CITIZENS:-100000}
PG=${LGSP_LOAD_POSTGRES_URL-postgres://postgres@127.0.0.1:5432}
OUT=${LGSP_LOAD_OUT:-$ROOT/target/load/latest.md}
LATENCY_CONNS=8
PACE_MS=8
P_POP=17101 P_CIVIL=17102 P_INS=17103 P_NGINX=17180 P_FLOOR=17185 P_LGSP=17190 P_LGSP_PG=17191
POP_TOKEN=population-dev-token INS_TOKEN=insurance-dev-token CIVIL_TOKEN=civil-status-dev-token
STEWARD=steward-token-for-the-load-test

say() { printf '==> %s\n' "$*" >&2; }

need() {
  local missing=()
  for p in "$@"; do command -v "${p%%:*}" >/dev/null 2>&1 || missing+=("${p#*:}"); done
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need wrk:wrk nginx:nginx-light curl:curl python3:python3
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for port in $P_POP $P_CIVIL $P_INS $P_NGINX $P_FLOOR $P_LGSP $P_LGSP_PG; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is already in use on 127.0.0.1; stop what listens there and run again"
    exit 1
  fi
done

# The profile built: release (what the README's run command ships), or
# perf (thin LTO, the settings release had before; see BENCHMARKS.md).
PROFILE=${LGSP_LOAD_PROFILE:-release}
say "building lgsp ($PROFILE)"
cargo build --profile "$PROFILE" --locked --bin lgsp --example stack_floor >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE/lgsp
FLOOR_BIN=$TARGET/$PROFILE/examples/stack_floor

WORK=$(mktemp -d)
PIDS=()
PG_DB=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "$PG_DB" ]]; then psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() { # url [header]
  for _ in $(seq 1 600); do
    if curl -fs -o /dev/null ${2:+-H "$2"} "$1"; then return 0; fi
    sleep 0.1
  done
  say "$1 did not answer"; exit 1
}

say "starting the mock registries ($CITIZENS citizens)"
"$BIN" registries serve --citizens "$CITIZENS" --population-port $P_POP --civil-status-port $P_CIVIL \
  --insurance-port $P_INS --portal-port 0 >"$WORK/mocks.log" 2>&1 &
PIDS+=($!)
"$BIN" registries sample --citizens "$CITIZENS" --per-kind 500 --json >"$WORK/samples.json"
python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["adult_with_household"]))' \
  "$WORK/samples.json" >"$WORK/ids.txt"
FIRST_ID=$(head -n1 "$WORK/ids.txt")
wait_http "http://127.0.0.1:$P_POP/api/v1/cong-dan/$FIRST_ID" "Authorization: Bearer $POP_TOKEN"

say "starting nginx as a plain reverse proxy to the population registry"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  upstream population { server 127.0.0.1:$P_POP; keepalive 256; }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / {
      proxy_pass http://population;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_http "http://127.0.0.1:$P_NGINX/api/v1/cong-dan/$FIRST_ID" "Authorization: Bearer $POP_TOKEN"

say "starting lgsp's HTTP stack alone (actix-web and reqwest) as a reverse proxy to the population registry"
"$FLOOR_BIN" $P_FLOOR "http://127.0.0.1:$P_POP" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=($FLOOR_PID)
wait_http "http://127.0.0.1:$P_FLOOR/api/v1/cong-dan/$FIRST_ID" "Authorization: Bearer $POP_TOKEN"

lgsp_config() { # port database_url
  cat <<EOF
host = "127.0.0.1"
port = $1
database_url = "$2"
bootstrap_admin_tokens = ["steward:$STEWARD"]
[log]
level = "warn"
[database]
max_connections = 8
[upstreams.population]
url = "http://127.0.0.1:$P_POP"
token = "$POP_TOKEN"
[upstreams.civil_status]
url = "http://127.0.0.1:$P_CIVIL"
token = "$CIVIL_TOKEN"
[upstreams.insurance]
url = "http://127.0.0.1:$P_INS"
token = "$INS_TOKEN"
EOF
}

start_lgsp() { # name port database_url -> pid in LGSP_PID, key in LGSP_KEY
  lgsp_config "$2" "$3" >"$WORK/$1.toml"
  "$BIN" --config "$WORK/$1.toml" serve >"$WORK/$1.log" 2>&1 &
  LGSP_PID=$!
  PIDS+=($LGSP_PID)
  wait_http "http://127.0.0.1:$2/readyz"
  local base="http://127.0.0.1:$2"
  curl -fsS -o /dev/null "$base/admin/v1/partners" -H "Authorization: Bearer $STEWARD" -H 'Content-Type: application/json' \
    -d '{"id":"000.00.99.H29","name":"Load test portal","kind":"state_agency","rate_per_minute":1000000,"burst":100000,
         "policy":{"forms":["*"],"purposes":["*"],"operations":["*"],"elements":["*","ethnicity","religion"],"access_log":true}}'
  LGSP_KEY=$(curl -fsS "$base/admin/v1/partners/000.00.99.H29/keys" -H "Authorization: Bearer $STEWARD" \
    -H 'Content-Type: application/json' -d '{"label":"load"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
}

say "starting lgsp (audit trail on SQLite)"
start_lgsp sqlite $P_LGSP "sqlite://$WORK/lgsp.db"
SQLITE_PID=$LGSP_PID SQLITE_KEY=$LGSP_KEY
SQLITE_BASELINE_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SQLITE_PID/status")
# Of the resident memory, the pages mapped from lgsp's own file (its code and
# read-only data): shared, clean, and read back from the page cache.
BASE_FILE_KB=$(awk '/RssFile/ {print $2}' "/proc/$SQLITE_PID/status")
# One prefill to see the form really calls three operations.
SOURCES=$(curl -fs "http://127.0.0.1:$P_LGSP/v1/prefill" -H "Authorization: Bearer $SQLITE_KEY" -H 'Content-Type: application/json' \
  -d "{\"form\":\"tk1_ts\",\"citizen_id\":\"$FIRST_ID\",\"purpose\":\"health_insurance_enrolment\"}" |
  python3 -c 'import json,sys; print(" ".join(s["operation"] for s in json.load(sys.stdin)["sources"]))')
say "the prefill calls: $SOURCES"

if [[ -n "$PG" ]]; then
  say "starting lgsp (audit trail on PostgreSQL)"
  PG_DB="lgsp_load_$$"
  psql "$PG/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null
  start_lgsp postgres $P_LGSP_PG "$PG/$PG_DB"
  PG_PID=$LGSP_PID PG_KEY=$LGSP_KEY
fi

# "failed/total" registry calls made by the lgsp node on this port: a prefill
# answers 200 even when a source failed, so its partial answers show here.
upstream_failures() {
  curl -fs "http://127.0.0.1:$1/metrics" | awk '/^lgsp_upstream_requests_total/ {
    n += $2; if ($1 !~ /outcome="ok"/) f += $2 } END { printf "%d/%d", f, n }'
}

RESULTS=$WORK/results.txt
: >"$RESULTS"
run() { # label url mode token connections [pause between a connection's requests, ms]
  say "$1 ($5 connections, ${DURATION}s)"
  local line
  line=$(LGSP_LOAD_MODE=$3 LGSP_LOAD_TOKEN=$4 LGSP_LOAD_IDS=$WORK/ids.txt LGSP_LOAD_DELAY_MS=${6:-0} \
    wrk -t2 -c"$5" -d"${DURATION}s" --timeout 10s -s "$ROOT/benches/load/scenario.lua" "$2" | grep '^RESULT')
  echo "$1|$5|${line#RESULT }" >>"$RESULTS"
}

# CPU time of a process, or of one of its threads by name (clock ticks from
# /proc): per request of the stack alone, per exchange of lgsp, and the audit
# writer's share of an exchange.
cpu_ticks() { # pid [thread name]; without a thread, the process and its children (nginx's workers)
  if [[ -z "${2:-}" ]]; then
    awk -v p="$1" '$1 == p || $4 == p {s += $14 + $15} END {print s + 0}' /proc/[0-9]*/stat 2>/dev/null
    return
  fi
  local t
  for t in /proc/"$1"/task/*; do
    if [[ "$(cat "$t/comm")" == "$2" ]]; then awk '{print $14 + $15}' "$t/stat"; return; fi
  done
  echo 0
}
run "1 population registry, direct" "http://127.0.0.1:$P_POP" population "$POP_TOKEN" "$CONNS"
NGINX0=$(cpu_ticks "$NGINX_PID")
run "2 nginx -> registry" "http://127.0.0.1:$P_NGINX" population "$POP_TOKEN" "$CONNS"
NGINX_TICKS=$(($(cpu_ticks "$NGINX_PID") - NGINX0))
FLOOR0=$(cpu_ticks "$FLOOR_PID")
run "2b actix-web + reqwest alone -> registry" "http://127.0.0.1:$P_FLOOR" population "$POP_TOKEN" "$CONNS"
FLOOR_TICKS=$(($(cpu_ticks "$FLOOR_PID") - FLOOR0))
kill "$FLOOR_PID" 2>/dev/null || true
CPU0=$(cpu_ticks "$SQLITE_PID") WRITER0=$(cpu_ticks "$SQLITE_PID" audit-writer)
run "3 lgsp exchange -> registry" "http://127.0.0.1:$P_LGSP" exchange "$SQLITE_KEY" "$CONNS"
CPU_TICKS=$(($(cpu_ticks "$SQLITE_PID") - CPU0)) WRITER_TICKS=$(($(cpu_ticks "$SQLITE_PID" audit-writer) - WRITER0))
run "4 lgsp prefill, 3 sources, SQLite audit" "http://127.0.0.1:$P_LGSP" prefill "$SQLITE_KEY" "$CONNS"
if [[ -n "$PG" ]]; then
  run "5 lgsp prefill, 3 sources, PostgreSQL audit" "http://127.0.0.1:$P_LGSP_PG" prefill "$PG_KEY" "$CONNS"
  PG_UPSTREAM=$(upstream_failures $P_LGSP_PG)
  kill "$PG_PID" 2>/dev/null || true
fi
# Linked dossiers run meanwhile: births filed one after another, each carried
# through its three registries by the node's worker.
python3 -c 'import json,sys; [print(json.dumps(b)) for b in json.load(open(sys.argv[1]))["birth_filings"]]' \
  "$WORK/samples.json" >"$WORK/filings.jsonl"
if [[ "${LGSP_LOAD_DOSSIERS:-1}" == 0 ]]; then : >"$WORK/filings.jsonl"; fi
(
  i=0
  while IFS= read -r body; do
    curl -fs -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$P_LGSP/v1/linked-dossiers" \
      -H "Authorization: Bearer $SQLITE_KEY" -H "Idempotency-Key: load-$i" -H 'Content-Type: application/json' \
      -d "$body" || true
    i=$((i + 1))
  done <"$WORK/filings.jsonl" >"$WORK/filed.txt"
) &
FILER=$!
# The largest file-mapped part seen while the 1,000 connections run.
(
  max=0
  while kill -0 "$SQLITE_PID" 2>/dev/null; do
    kb=$(awk '/RssFile/ {print $2}' "/proc/$SQLITE_PID/status" 2>/dev/null || echo 0)
    ((kb > max)) && max=$kb && echo "$max" >"$WORK/file_peak_kb"
    sleep 0.1
  done
) &
FILE_SAMPLER=$!
run "6 lgsp prefill, 1,000 connections" "http://127.0.0.1:$P_LGSP" prefill "$SQLITE_KEY" 1000
kill "$FILER" "$FILE_SAMPLER" 2>/dev/null || true
PEAK_FILE_KB=$(cat "$WORK/file_peak_kb" 2>/dev/null || echo 0)
wait "$FILER" 2>/dev/null || true
PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SQLITE_PID/status")
FILED=$(grep -c '^202$' "$WORK/filed.txt" || true)
STEPS_DONE=$(curl -fs "http://127.0.0.1:$P_LGSP/metrics" | awk '/^lgsp_dossier_steps_total/ && /state="done"/ {n += $2} END {print n + 0}')
# Latency at low concurrency: what the prefill adds over its slowest upstream,
# first with no pause (7, saturating), then paced well below saturation (8):
# each connection pauses $PACE_MS between its requests (about 1,000 requests/s).
for pace in 0 $PACE_MS; do
  if ((pace)); then n=8 how=", paced"; else n=7 how=""; fi
  run "${n}a upstream population.citizen$how" "http://127.0.0.1:$P_POP" population "$POP_TOKEN" $LATENCY_CONNS $pace
  run "${n}b upstream population.household$how" "http://127.0.0.1:$P_POP" household "$POP_TOKEN" $LATENCY_CONNS $pace
  run "${n}c upstream insurance.card$how" "http://127.0.0.1:$P_INS" insurance "$INS_TOKEN" $LATENCY_CONNS $pace
  run "${n}d lgsp prefill over ${n}a-${n}c$how" "http://127.0.0.1:$P_LGSP" prefill "$SQLITE_KEY" $LATENCY_CONNS $pace
done
sleep 1
AFTER_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SQLITE_PID/status")
AUDIT=$(curl -fs "http://127.0.0.1:$P_LGSP/metrics" | awk '/^lgsp_audit_records_written_total/ {print $2}')
SQLITE_UPSTREAM=$(upstream_failures $P_LGSP)

mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$SQLITE_BASELINE_KB" "$PEAK_KB" "$AFTER_KB" "${AUDIT:-?}" "$DURATION" "$SOURCES" \
  "$SQLITE_UPSTREAM" "${PG_UPSTREAM:-}" "$CPU_TICKS" "$WRITER_TICKS" "$(getconf CLK_TCK)" "$FLOOR_TICKS" "$NGINX_TICKS" \
  "${FILED:-0}" "${STEPS_DONE:-0}" "$BASE_FILE_KB" "$PEAK_FILE_KB" <<'EOF' | tee "$OUT"
import sys
rows = []
for line in open(sys.argv[1]):
    label, conns, rest = line.rstrip("\n").split("|")
    rps, p50, p90, p99, n, errors = rest.split()
    rows.append(dict(label=label, conns=int(conns), rps=float(rps), p50=float(p50), p90=float(p90),
                     p99=float(p99), n=int(n), errors=int(errors)))
by = {r["label"].split()[0]: r for r in rows}
base_kb, peak_kb, after_kb, audit, duration, sources, sqlite_up, pg_up, cpu, writer, hz, floor, nginx_cpu, filed, steps, base_file_kb, peak_file_kb = sys.argv[2:19]
print(f"{duration} s per scenario; prefill form tk1_ts, calling {sources}\n")
print("| scenario | conns | requests/s | p50 ms | p90 ms | p99 ms | requests | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print(f"| {r['label']} | {r['conns']} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['n']:,} | {r['errors']} |")
print()
nginx = by["2"]["rps"]
def ratio(k):
    return by[k]["rps"] / nginx if k in by else float("nan")
us = lambda ticks, k: int(ticks) / int(hz) * 1e6 / (by[k]["n"] or 1)
stack_rps, stack_us = by["2b"]["rps"], us(floor, "2b")
print(f"- lgsp's HTTP stack alone (actix-web + reqwest, no work of lgsp's, row 2b): {ratio('2b'):.2f}x nginx's throughput; "
      f"CPU time per request {stack_us:.0f} µs, nginx {us(nginx_cpu, '2'):.0f} µs")
print(f"- exchange / the stack alone: {by['3']['rps'] / stack_rps:.2f}x (target >= 0.6x); {ratio('3'):.2f}x nginx")
print(f"- lgsp's CPU time per exchange: {us(cpu, '3'):.0f} µs, {us(cpu, '3') / stack_us:.1f}x the stack's (target <= 2x); "
      f"the audit writer thread {us(writer, '3'):.0f} µs, {us(writer, '3') / stack_us:.2f}x (target <= 0.25x)")
print(f"- prefill (SQLite audit) / the stack alone: {by['4']['rps'] / stack_rps:.2f}x (target >= 0.25x); {by['4']['rps']:,.0f} prefills/s")
if "5" in by:
    print(f"- prefill (PostgreSQL audit) / the stack alone: {by['5']['rps'] / stack_rps:.2f}x (target >= 0.25x); "
          f"{by['5']['rps']:,.0f} prefills/s, {by['5']['rps'] / by['4']['rps']:.2f}x SQLite")
for d, ups, how in (("7d", ("7a", "7b", "7c"), "saturating"), ("8d", ("8a", "8b", "8c"), "paced")):
    slowest = max(by[k]["p99"] for k in ups)
    print(f"- prefill p99 at {by[d]['conns']} connections, {how} ({by[d]['rps']:,.0f}/s): {by[d]['p99']:.2f} ms "
          f"over a slowest upstream p99 of {slowest:.2f} ms: adds {by[d]['p99'] - slowest:.2f} ms (target <= 2 ms)")
print(f"- lgsp memory (SQLite node): {int(base_kb) / 1024:.0f} MB after start, peak {int(peak_kb) / 1024:.0f} MB "
      f"through 1,000 connections with {filed} linked dossiers filed meanwhile ({steps} registry steps done by its end) "
      f"(target <= 100 MB), {int(after_kb) / 1024:.0f} MB after the run; of these, mapped from lgsp's file "
      f"(its code, clean and shared): {int(base_file_kb) / 1024:.0f} MB after start, at most {int(peak_file_kb) / 1024:.0f} MB during the peak")
print(f"- audit records written by the SQLite node: {audit}; non-2xx or socket errors are in the errors column")
print(f"- registry calls that failed (failed/total; those prefills answered partially): SQLite node {sqlite_up}"
      + (f", PostgreSQL node {pg_up}" if pg_up else ""))
EOF
