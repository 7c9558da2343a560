#!/usr/bin/env bash
# contrib/prometheus for real. promtool checks and unit-tests the alert rules; then query-exporter 5 (from
# PyPI, into a venv of its own: the supported route) runs with contrib/prometheus/query-exporter.yaml, and
# Debian's prometheus-postgres-exporter (0.11.1) with contrib/prometheus/queries.yaml (its
# --extend.query-path, deprecated upstream since 0.13: the deprecated route), both against a throwaway
# cluster, connected as a role whose only right is pg_monitor; Debian's Prometheus scrapes query-exporter
# every second with contrib/prometheus/alerts.yaml loaded, while a scripted incident plays out: grants, a held and a superseded
# refusal, a commit applied, a forced release and the commit that then answers lease_lost, a reap at the age
# ceiling, a restart whose recover reclaims a stale lease, a dead session's leases (one left stale, one
# reclaimed by an acquire), a boot of unknown liveness, the kill-switch turned off. Each exporter's /metrics must then show every
# orch_lease series with its type, labels (task_table included) and exact value, unchanged by a prune of the whole history; Prometheus must fire the ceiling
# and lease_lost alerts and hold the others pending; without pg_monitor the queries must fail, and say so.
# The dashboard and the rules may name only series the exporter emits.
# Uses the orch_lease installed in the system PostgreSQL (scripts/test.sh installs it; by hand:
# flock /tmp/orch_lease.lock bash -c '. scripts/lib.sh && install_debug && scripts/prometheus-test.sh').
# The Debian packages' own services are never used: the exporter and Prometheus run here on free ports,
# with their own environment and files, and stop on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=prometheus
contrib=contrib/prometheus
work=target/prometheus
mkdir -p "$work"
apt_ensure prometheus prometheus-postgres-exporter curl python3-venv
passed=0

# query-exporter and its PostgreSQL driver, pinned, in a venv of this worktree's own.
qe_venv=$ROOT_DIR/$work/query-exporter-venv
grep -qsF -- "-m venv $qe_venv" "$qe_venv/pyvenv.cfg" || { rm -rf "$qe_venv"; python3 -m venv "$qe_venv"; }
"$qe_venv/bin/pip" install -q --disable-pip-version-check -r "$contrib/query-exporter-requirements.txt"

log "prometheus: promtool check rules and promtool test rules"
promtool check rules "$contrib/alerts.yaml"
passed=$((passed + 1))
(cd "$contrib" && promtool test rules alerts.test.yaml)
passed=$((passed + 1))

pids=()
stop() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    cluster_stop
}
trap stop EXIT
cluster_start
new_database app
q "CREATE EXTENSION orch_lease;
   CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
   INSERT INTO tasks SELECT i, 'queued' FROM generate_series(1, 8) i;
   SELECT orch_lease.register_task_table('tasks');
   CREATE ROLE worker IN ROLE orch_lease_actor;
   CREATE ROLE webhook IN ROLE orch_lease_actor;
   CREATE ROLE oncall IN ROLE orch_lease_admin;
   GRANT SELECT, UPDATE ON tasks TO worker, webhook, oncall;
   CREATE ROLE orch_lease_exporter LOGIN IN ROLE pg_monitor;" >/dev/null

exporter_port=$(free_port)
# Nothing of this shell's environment (PG_EXPORTER_* settings included) reaches the exporter.
env -i PATH=/usr/bin:/bin \
    DATA_SOURCE_NAME="host=127.0.0.1 port=$PGPORT user=orch_lease_exporter dbname=app sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$exporter_port" \
    --extend.query-path="$contrib/queries.yaml" > "$work/exporter.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$exporter_port/" >/dev/null && break; sleep 0.2; done
log "prometheus: postgres_exporter $(prometheus-postgres-exporter --version 2>&1 | awk 'NR == 1 { print $3 }') on port $exporter_port (deprecated route)"

qe_port=$(free_port)
env -i PATH=/usr/bin:/bin PROMETHEUS_DISABLE_CREATED_SERIES=true \
    ORCH_LEASE_EXPORTER_DSN="postgresql://orch_lease_exporter@127.0.0.1:$PGPORT/app" \
    ORCH_LEASE_EXPORTER_SERVER="127.0.0.1:$PGPORT" \
    "$qe_venv/bin/query-exporter" --config "$contrib/query-exporter.yaml" --host 127.0.0.1 --port "$qe_port" \
    > "$work/query-exporter.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$qe_port/metrics" >/dev/null && break; sleep 0.2; done
log "prometheus: query-exporter $("$qe_venv/bin/query-exporter" --version 2>&1 | awk '{ print $NF }') on port $qe_port (supported route)"

prometheus_port=$(free_port)
rm -rf "$work/tsdb"
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$ROOT_DIR/$contrib/alerts.yaml"]
scrape_configs:
  - job_name: postgres
    static_configs: [{targets: ["127.0.0.1:$qe_port"]}]
EOF
env -i PATH=/usr/bin:/bin prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prometheus_port" > "$work/prometheus.log" 2>&1 &
pids+=($!)
# api PATH: what Prometheus's HTTP API answers at /api/v1/PATH.
api() { curl -sf "http://127.0.0.1:$prometheus_port/api/v1/$1"; }
# The counters' zeros must be scraped before the incident, for increase() to see it.
for _ in $(seq 100); do
    api 'query?query=orch_lease_releases_total' 2>/dev/null | grep -q '"0"\]' && break
    sleep 0.2
done
api 'query?query=orch_lease_releases_total' | grep -q '"0"\]' || fail "Prometheus did not scrape query-exporter (see $work/prometheus.log, $work/query-exporter.log)"
log "prometheus: Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 { print $3 }') on port $prometheus_port"

# scrape NAME [PORT]: an exporter's /metrics (query-exporter's, or postgres_exporter's on PORT) into
# $work/NAME.txt, then its orch_lease samples into $work/NAME.series without the exporters' own labels (server,
# and query-exporter's database "orch_lease", asserted apart), whole numbers without ".0", ages masked as <age>
# and times as <time>: the two routes give the same file.
scrape() {
    curl -sf "http://127.0.0.1:${2:-$qe_port}/metrics" > "$work/$1.txt" ||
        fail "the exporter did not answer (see $work/query-exporter.log, $work/exporter.log)"
    # || true: no orch_lease series at all is an empty file, which the comparisons with the expected series fail.
    { grep '^orch_lease' "$work/$1.txt" || true; } |
        sed -E -e 's/(^|[{,])database="orch_lease"/\1/' -e 's/,?server="[^"]*"//' -e 's/\{,/{/' -e 's/,,/,/' -e 's/,\}/}/' \
            -e 's/\{\}//' -e 's/ (-?[0-9]+)\.0$/ \1/' -e 's/^(orch_lease[a-z_]*age_seconds.*) [^ ]+$/\1 <age>/' \
            -e 's/^(orch_lease[a-z_]*timestamp_seconds.*) [^ ]+$/\1 <time>/' |
        sort > "$work/$1.series"
}

# --- the incident ----------------------------------------------------------------------------------------
as() { q "SET ROLE $1; $2"; }
as worker "SELECT count(*) FROM orch_lease.transition_lease_recover('worker-boot-1', 'worker', 101)" >/dev/null
declare -A token
for item in 1 2 3 4; do
    token[$item]=$(as worker "SELECT token FROM orch_lease.transition_lease_acquire('$item', 'worker', 101, 'worker-boot-1')")
done
# The webhook's instance name is hostile: its label is escaped, and keeps no control character.
as webhook "SELECT count(*) FROM orch_lease.transition_lease_recover('webhook-boot-1', E'web hook \"β\"\\n{x}', 202)" >/dev/null
check "SET ROLE webhook; SELECT outcome FROM orch_lease.transition_lease_acquire('1', 'webhook', 202, 'webhook-boot-1')" \
      held "a live owner's item is refused"
check "SET ROLE worker; SELECT outcome FROM orch_lease.commit_stage_cas('1', ${token[1]}, 'queued', 'merged')" \
      applied "the holder's commit applies"
check "SET ROLE oncall; SELECT orch_lease.transition_lease_force_release('2', NULL, 'stuck since 03:10')" t \
      "the people on call force a release"
check "SET ROLE worker; SELECT outcome FROM orch_lease.commit_stage_cas('2', ${token[2]}, 'queued', 'merged')" \
      lease_lost "the commit after the forced release"
q "UPDATE orch_lease.transition_lease SET acquired_at = now() - interval '2 hours' WHERE work_item = '3'"
check "SET ROLE oncall; SELECT string_agg(work_item || ':' || kind, ' ') FROM orch_lease.transition_lease_reap(3600)" \
      3:ceiling "the reaper takes the two-hour-old live lease at its ceiling"
check "SET ROLE worker; SELECT string_agg(work_item, ' ') FROM orch_lease.transition_lease_recover('worker-boot-2', 'worker', 102)" \
      4 "the restarted worker's recover reclaims its stale lease"
check "SET ROLE worker; SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'worker', 101, 'worker-boot-1')" \
      superseded "the worker's previous incarnation is refused"
check "SET ROLE worker; SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'worker', 102, 'worker-boot-2')" \
      acquired "the new incarnation acquires"
q "UPDATE orch_lease.transition_lease SET acquired_at = now() - interval '600 seconds' WHERE work_item = '5'"
check "SET ROLE webhook; SELECT outcome FROM orch_lease.transition_lease_acquire('2', 'webhook', 202, 'webhook-boot-1')" \
      acquired "the webhook acquires the item that was forced"
check "SET ROLE webhook; SELECT outcome FROM orch_lease.transition_lease_acquire('6', 'cron', 303, 'cron-never-recovered')" \
      acquired "a boot that never called recover acquires"
# A session-bound holder that goes away: its two leases turn stale.
check "SET ROLE webhook; SELECT string_agg(outcome, ' ') FROM (SELECT (orch_lease.transition_lease_acquire_session(i, 'webhook')).outcome
        FROM unnest(ARRAY['7', '8']) i) g" "acquired acquired" "a session takes two session-bound leases"
await_answer "SELECT count(*) FROM orch_lease.transition_lease_status WHERE liveness = 'stale'" 2 50 0.1 >/dev/null
token[8]=$(as worker "SELECT token FROM orch_lease.transition_lease_acquire('8', 'worker', 102, 'worker-boot-2') WHERE outcome = 'reclaimed'")
check "SET ROLE worker; SELECT orch_lease.transition_lease_release('8', ${token[8]:-NULL})" t \
      "the worker reclaims the dead session's lease, then releases it"

# Last, the people on call turn the kill-switch off: its gauge goes to 0, its alert waits its 30 minutes.
check "SET ROLE oncall; SELECT orch_lease.set_enabled(false, 'INC-1')" t "the people on call turn orch_lease off"
switched=$(q "SELECT extract(epoch FROM changed_at)::float8 FROM orch_lease.kill_switch")

scrape incident
cat > "$work/expected.series" <<'EOF'
orch_lease_cas_total{outcome="applied"} 1
orch_lease_cas_total{outcome="invalid_transition"} 0
orch_lease_cas_total{outcome="lease_lost"} 1
orch_lease_cas_total{outcome="not_found"} 0
orch_lease_cas_total{outcome="not_held"} 0
orch_lease_cas_total{outcome="retry"} 0
orch_lease_cas_total{outcome="stage_mismatch"} 0
orch_lease_enabled 0
orch_lease_enabled_changed_timestamp_seconds <time>
orch_lease_grants_total{outcome="acquired"} 9
orch_lease_grants_total{outcome="reclaimed"} 1
orch_lease_instance_leases{actor_instance="",liveness="stale"} 1
orch_lease_instance_leases{actor_instance="",liveness="unknown"} 1
orch_lease_instance_leases{actor_instance="web hook \"β\"_{x}",liveness="live"} 1
orch_lease_instance_leases{actor_instance="worker",liveness="live"} 1
orch_lease_instance_oldest_lease_age_seconds{actor_instance="",liveness="stale"} <age>
orch_lease_instance_oldest_lease_age_seconds{actor_instance="",liveness="unknown"} <age>
orch_lease_instance_oldest_lease_age_seconds{actor_instance="web hook \"β\"_{x}",liveness="live"} <age>
orch_lease_instance_oldest_lease_age_seconds{actor_instance="worker",liveness="live"} <age>
orch_lease_leases{liveness="live"} 2
orch_lease_leases{liveness="stale"} 1
orch_lease_leases{liveness="unknown"} 1
orch_lease_oldest_live_lease_age_seconds <age>
orch_lease_reclaims_total{kind="ceiling"} 1
orch_lease_reclaims_total{kind="manual"} 1
orch_lease_reclaims_total{kind="stale"} 2
orch_lease_refusals_total{outcome="busy"} 0
orch_lease_refusals_total{outcome="held"} 1
orch_lease_refusals_total{outcome="not_found"} 0
orch_lease_refusals_total{outcome="retry"} 0
orch_lease_refusals_total{outcome="superseded"} 1
orch_lease_releases_total 1
orch_lease_table_leases{liveness="live",task_table="public.tasks"} 2
orch_lease_table_leases{liveness="stale",task_table="public.tasks"} 1
orch_lease_table_leases{liveness="unknown",task_table="public.tasks"} 1
orch_lease_table_oldest_lease_age_seconds{liveness="live",task_table="public.tasks"} <age>
orch_lease_table_oldest_lease_age_seconds{liveness="stale",task_table="public.tasks"} <age>
orch_lease_table_oldest_lease_age_seconds{liveness="unknown",task_table="public.tasks"} <age>
EOF
diff -u "$work/expected.series" "$work/incident.series" || fail "query-exporter's scrape after the incident differs from the expected series (diff above)"
passed=$((passed + 1))
scrape incident-deprecated "$exporter_port"
diff -u "$work/expected.series" "$work/incident-deprecated.series" ||
    fail "postgres_exporter's scrape after the incident differs from the expected series (diff above)"
passed=$((passed + 1))
# query-exporter's own labels: every orch_lease series names the database entry and the server.
unlabelled=$(grep '^orch_lease' "$work/incident.txt" | grep -cv "database=\"orch_lease\".*server=\"127.0.0.1:$PGPORT\"" || true) # || true: grep -c exits 1 on 0, checked next
[ "$unlabelled" = 0 ] || fail "$unlabelled orch_lease series of query-exporter lack database=\"orch_lease\" or server"

age=$(grep '^orch_lease_oldest_live_lease_age_seconds' "$work/incident.txt" | awk '{ print $2 }')
awk -v a="$age" 'BEGIN { exit !(a >= 600 && a < 660) }' || fail "oldest live lease age is $age, wanted 600 s and a little"
at=$(grep '^orch_lease_enabled_changed_timestamp_seconds' "$work/incident.txt" | awk '{ print $2 }')
awk -v a="$at" -v s="$switched" 'BEGIN { exit !(a - s < 0.01 && s - a < 0.01) }' ||
    fail "the kill-switch's last change is $at, wanted the switch's time $switched"
for scraped in incident incident-deprecated; do
    for family in grants refusals releases reclaims cas; do
        grep -qx "# TYPE orch_lease_${family}_total counter" "$work/$scraped.txt" || fail "$scraped: orch_lease_${family}_total is not typed counter"
    done
    for gauge in leases oldest_live_lease_age_seconds instance_leases instance_oldest_lease_age_seconds enabled \
                 enabled_changed_timestamp_seconds table_leases table_oldest_lease_age_seconds; do
        grep -qx "# TYPE orch_lease_$gauge gauge" "$work/$scraped.txt" || fail "$scraped: orch_lease_$gauge is not typed gauge"
    done
done
! grep -q 'status="error"\|^database_errors_total' "$work/incident.txt" || fail "query-exporter reported a query error (see $work/query-exporter.log)"
[ "$(grep -c '^queries_total{.*status="success"}' "$work/incident.txt")" = 10 ] || fail "query-exporter did not run its 10 queries"
grep -qx 'pg_exporter_last_scrape_error 0' "$work/incident-deprecated.txt" || fail "postgres_exporter reported a scrape error (see $work/exporter.log)"
grep -q '^pg_exporter_user_queries_load_error{.*} 0$' "$work/incident-deprecated.txt" || fail "postgres_exporter did not load queries.yaml"
passed=$((passed + 1))

# Prometheus, scraping all along, must fire the alerts of the incident's events and hold pending those that
# wait (the lease of unknown liveness, the stale one); the oldest live lease is 600 s old and the series are
# present: no alert for those. The takeover storm is left out: four takeovers within seconds are 0.8 a minute
# over its 5-minute window, but rate()'s extrapolation over so few samples may put them above one (its unit
# tests pin it).
alerts() {
    api alerts | python3 -c 'import json, sys
print(" ".join(sorted(a["labels"]["alertname"] + ":" + a["state"] for a in json.load(sys.stdin)["data"]["alerts"]
                      if a["labels"]["alertname"] != "OrchLeaseTakeoverStorm")))'
}
wanted="OrchLeaseCeilingReap:firing OrchLeaseDisabled:pending OrchLeaseLostCommit:firing OrchLeaseStaleLeases:pending OrchLeaseUnknownLiveness:pending"
for _ in $(seq 60); do
    [ "$(alerts)" = "$wanted" ] && break
    sleep 0.5
done
[ "$(alerts)" = "$wanted" ] || fail "Prometheus's alerts are $(alerts), wanted $wanted"
passed=$((passed + 1))

# Counters never go down: a prune of the whole history leaves every series as it was.
check "SET ROLE oncall; SELECT orch_lease.transition_lease_prune('0 seconds') > 0" t "the prune removes the history"
scrape pruned
diff -u "$work/incident.series" "$work/pruned.series" || fail "a prune changed the series (diff above)"
scrape pruned-deprecated "$exporter_port"
diff -u "$work/incident-deprecated.series" "$work/pruned-deprecated.series" || fail "a prune changed postgres_exporter's series (diff above)"
passed=$((passed + 1))

# pg_monitor is what the exporters need: without it the orch_lease queries fail and say so. query-exporter
# counts each failed query (and keeps the last values it read: alert on its queries_total{status="error"}).
q "REVOKE pg_monitor FROM orch_lease_exporter"
scrape revoked
# || true: grep -c exits 1 on 0 errors, which the comparison with 10 fails
[ "$(grep -c '^queries_total{.*status="error"}' "$work/revoked.txt" || true)" = 10 ] ||
    fail "query-exporter did not count its 10 queries failing without pg_monitor"
scrape revoked-deprecated "$exporter_port"
[ ! -s "$work/revoked-deprecated.series" ] || fail "orch_lease series without pg_monitor"
grep -qx 'pg_exporter_last_scrape_error 1' "$work/revoked-deprecated.txt" || fail "no scrape error reported without pg_monitor"
q "GRANT pg_monitor TO orch_lease_exporter"
passed=$((passed + 1))

# Actors name their instances, so the per-instance series are bounded: the 20 instances holding the most and
# "(others)" per liveness (issue #34: one series per instance let one actor's 100,000 leases take the exporter
# past Prometheus's scrape timeout). 500 instances with a lease each: at most 23 series, adding up to them all.
q "INSERT INTO orch_lease.boot (boot_id, instance, pid, registered_by)
     SELECT 'many-boot-' || i, 'many-' || i, i, 'worker' FROM generate_series(1, 500) i;
   INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, acquired_at, task_table)
     SELECT 1000 + i, nextval('orch_lease.token_seq'), 'many', i, 'many-boot-' || i, now(), 'tasks'::regclass
       FROM generate_series(1, 500) i"
# The bound is the query's: counted on postgres_exporter, which shows one scrape's rows. query-exporter keeps
# a label set it saw for 30 s (its expiration), so while the ranking of tied instances changes between
# Prometheus's scrapes it may show more (37 seen here): documented in contrib/prometheus/README.md.
scrape many "$exporter_port"
series=$(grep -c '^orch_lease_instance_leases' "$work/many.series" || true) # || true: grep -c exits 1 on 0, checked next
[ "$series" -le 23 ] || fail "500 instances gave $series orch_lease_instance_leases series, wanted at most 23"
sum=$(awk '/^orch_lease_instance_leases/ { n += $NF } END { print n }' "$work/many.series")
check "SELECT count(*) FROM orch_lease.transition_lease" "$sum" "the instance series add up to every lease"
grep -q '^orch_lease_instance_leases{actor_instance="(others)",liveness="live"} 48[0-9]$' "$work/many.series" ||
    fail "no (others) series for the instances past the 20th"
passed=$((passed + 1))

# query-exporter keeps every series it has seen until its `expiration`: the per-instance and per-table
# gauges, present only while leases are held, must be gone 30 s after the last scrape that saw them (or a
# stale lease's alert would outlive the lease), while the always-present families stay, at 0.
q "DELETE FROM orch_lease.transition_lease" >/dev/null
scrape released
grep -q '^orch_lease_table_leases' "$work/released.series" || fail "the per-table series went before their expiration"
sleep 31
scrape expired
! grep -q '^orch_lease_\(instance\|table\)_' "$work/expired.series" || fail "query-exporter kept the series of released leases past 30 s"
grep -qx 'orch_lease_leases{liveness="live"} 0' "$work/expired.series" || fail "orch_lease_leases{liveness=\"live\"} is not 0 once every lease is gone"
passed=$((passed + 1))

# The dashboard and the rules name only series the exporter emits, in valid PromQL.
grep -ho 'orch_lease_[a-z_]*' "$contrib/alerts.yaml" "$contrib/grafana/orch_lease.json" | sort -u > "$work/referenced"
[ -s "$work/referenced" ] || fail "no orch_lease series referenced"
while read -r name; do
    grep -q "^# TYPE $name " "$work/incident.txt" || fail "$name is referenced but the exporter does not emit it"
done < "$work/referenced"
python3 - "$contrib/grafana/orch_lease.json" > "$work/dashboard-rules.yaml" <<'EOF'
import json, sys
# Every expression of the dashboard as a recording rule, Grafana's variables replaced, for promtool.
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$server", ".*")
        print(f"      - record: dashboard:panel{panel['id']}:{target['refId']}\n        expr: {json.dumps(expr)}")
EOF
promtool check rules "$work/dashboard-rules.yaml" >/dev/null || fail "a dashboard expression is not valid PromQL"
echo "prometheus: $(wc -l < "$work/referenced") series referenced by the dashboard and the rules, all emitted"
passed=$((passed + 1))

echo "prometheus: $passed passed, 0 failed"
