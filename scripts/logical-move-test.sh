#!/usr/bin/env bash
# A move by logical replication (#29 item 3), for real: a publisher and a subscriber server on this machine,
# the database moved with CREATE PUBLICATION … FOR ALL TABLES / CREATE SUBSCRIPTION, and what orch_lease
# does on the subscriber. Logical replication carries the rows (leases, boots, history) but no sequence:
# the subscriber's token sequence starts again at 1, and a force-released zombie's token could be handed
# out again. The subscriber must grant nothing until an admin adopts the data (orch_lease.adopt_moved_data
# with the old server's last token), and then hand out tokens above every token of the old server, so the
# zombie's commit is `lease_lost` and the new holder's applies. Red on 0.5.0 before the fix: the
# subscriber's first acquire fails 23505 on lease_event_pkey, and once the history's sequence is set, it
# grants token 1 again. `make test` runs it (make test-ha installs orch_lease first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=logical-move
trap cluster_stop EXIT
passed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }

cluster_start -c wal_level=logical -c max_wal_senders=4 -c max_replication_slots=4 # the publisher
publisher=$PGPORT
subscriber=$(free_port)
as_pg "$PG_BIN/initdb" -D "$CLUSTER_DIR/subscriber" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
server_start "$CLUSTER_DIR/subscriber" "$subscriber" "${SERVER_SETTINGS[@]}"
on() { PGPORT=$1 q "$2"; }
# What an SQL statement answers on a server, an error included (its SQLSTATE and message).
# || true: an error is the answer here, checked by the caller.
answer() { PGPORT=$1 psql -X -q -t -A -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -c "$2" 2>&1 | sed 's/^ERROR: *//' || true; }
schema="CREATE EXTENSION orch_lease;
        CREATE ROLE actor LOGIN IN ROLE orch_lease_actor; CREATE ROLE adm LOGIN IN ROLE orch_lease_admin;
        CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
        GRANT SELECT, UPDATE ON tasks TO actor;"
on "$publisher" "$schema" >/dev/null
on "$subscriber" "$schema" >/dev/null

# On the old server: work, a lease still held by a live worker, and a zombie whose lease an on-call forced.
as_actor() { PGPORT=$1 PGUSER=actor q "$2"; }
on "$publisher" "INSERT INTO tasks SELECT g::text, 'queued' FROM generate_series(1, 20) g;
                 SELECT orch_lease.register_task_table('tasks')" >/dev/null
as_actor "$publisher" "SELECT orch_lease.transition_lease_recover('boot-1', 'worker-1')" >/dev/null
for i in $(seq 1 10); do
    token=$(as_actor "$publisher" "SELECT token FROM orch_lease.transition_lease_acquire('$i', 'w1', 1, 'boot-1')")
    as_actor "$publisher" "SELECT outcome FROM orch_lease.commit_stage_cas('$i', $token, 'queued', 'running')" >/dev/null
done
zombie=$(as_actor "$publisher" "SELECT token FROM orch_lease.transition_lease_acquire('11', 'w1', 1, 'boot-1')")
on "$publisher" "SELECT orch_lease.transition_lease_force_release('11', $zombie, 'stuck')" >/dev/null
held=$(as_actor "$publisher" "SELECT token FROM orch_lease.transition_lease_acquire('12', 'w1', 1, 'boot-1')")
last=$(on "$publisher" "SELECT last_value FROM orch_lease.token_seq")
[ "$zombie" -lt "$last" ] && [ "$held" = "$last" ] || fail "old server: zombie $zombie, held $held, last $last"

# A session on the subscriber that checked before the move keeps "not moved" (no read of the marks per
# call): the move's rows must reach its next acquire all the same (the marks' trigger fires ALWAYS, in the
# subscription's workers too). It acquires once (rolled back), waits for the old server's mark, asks again.
warm=$CLUSTER_DIR/warm.out
PGPORT=$subscriber psql -X -q -t -A -v VERBOSITY=sqlstate >"$warm" 2>&1 <<'SQL' &
BEGIN; SET LOCAL ROLE actor;
SELECT outcome FROM orch_lease.transition_lease_acquire('warm', 'w0', 1, 'boot-0');
ROLLBACK;
DO $$ BEGIN
    FOR i IN 1..3000 LOOP
        EXIT WHEN (SELECT count(*) FROM orch_lease.generation_mark) > 1;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SET ROLE actor;
SELECT token FROM orch_lease.transition_lease_acquire('14', 'w2', 1, 'boot-2');
SQL
warm_session=$!

# The move: every table of the database, orch_lease's with them.
on "$publisher" "CREATE PUBLICATION move FOR ALL TABLES" >/dev/null
on "$subscriber" "CREATE SUBSCRIPTION move CONNECTION 'host=$CLUSTER_DIR port=$publisher dbname=postgres user=postgres'
                  PUBLICATION move" >/dev/null 2>&1
synced=$(PGPORT=$subscriber await_answer \
    "SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) > 0 FROM pg_subscription_rel" t 300 0.1)
[ "$synced" = t ] || fail "the subscription never finished its initial copy"
rows="SELECT (SELECT count(*) FROM orch_lease.transition_lease) || '/' || (SELECT count(*) FROM orch_lease.boot)
             || '/' || (SELECT count(*) FROM orch_lease.lease_event) || '/' || (SELECT max(token) FROM orch_lease.transition_lease)"
want=$(on "$publisher" "$rows")
got=$(PGPORT=$subscriber await_answer "$rows" "$want" 100 0.1)
[ "$got" = "$want" ] || fail "the subscriber holds leases/boots/events/max token $got, the publisher $want"
ok "leases, boots and history carried as rows ($got); the token sequence is not: $(on "$subscriber" "SELECT last_value || ' called ' || is_called FROM orch_lease.token_seq")"

wait "$warm_session" || true # its output is the verdict, checked below
[ "$(head -n1 "$warm")" = acquired ] && [[ "$(tail -n1 "$warm")" == *55000* ]] ||
    fail "a session that checked before the move answered: $(tr '\n' ' ' <"$warm")"
ok "a session that acquired before the move is refused after it (55000): its kept check was invalidated"
# On the subscriber: no grant, and a clear error (not 23505), while its tokens could go backwards.
refused=$(answer "$subscriber" "SET ROLE actor; SELECT token FROM orch_lease.transition_lease_acquire('13', 'w2', 1, 'boot-2')")
[[ "$refused" == 55000* ]] || fail "an acquire on the moved data answered: $refused"
ok "an acquire on the moved data is refused: $refused"
# Setting the history's sequence alone (what a DBA might do about the 23505) grants nothing either.
on "$subscriber" "SELECT setval('orch_lease.lease_event_event_id_seq', (SELECT max(event_id) FROM orch_lease.lease_event))" >/dev/null
refused=$(answer "$subscriber" "SET ROLE actor; SELECT token FROM orch_lease.transition_lease_acquire('11', 'w2', 1, 'boot-2')")
[[ "$refused" == 55000* ]] || fail "with the history's sequence set, an acquire answered: $refused"
ok "with only the history's sequence set, still refused (the token would have been 1)"
refused=$(answer "$subscriber" "SET ROLE actor; SELECT orch_lease.adopt_moved_data($last)")
[[ "$refused" == 42501* ]] || fail "an actor's adopt_moved_data answered: $refused"
refused=$(answer "$subscriber" "SET ROLE adm; SELECT orch_lease.adopt_moved_data($last)")
[[ "$refused" == 55000* ]] || fail "adopt_moved_data with the subscription enabled answered: $refused"
ok "adopt_moved_data: refused to an actor (42501) and while the subscription is enabled (55000)"

# The cut-over: the subscription stopped, the data adopted with the old server's last token.
on "$subscriber" "ALTER SUBSCRIPTION move DISABLE" >/dev/null
floor=$(on "$subscriber" "SET ROLE adm; SELECT orch_lease.adopt_moved_data($last)")
[ "$floor" = "$last" ] || fail "adopt_moved_data set the floor at $floor, wanted $last"
granted=$(as_actor "$subscriber" "SELECT outcome || ' ' || token FROM orch_lease.transition_lease_acquire('11', 'w2', 1, 'boot-2')")
new=${granted#acquired }
[ "$new" -gt "$last" ] || fail "after the adoption, an acquire answered $granted (old server's last token $last)"
ok "after adopt_moved_data($last): $granted, above every token of the old server"
zombie_commit=$(as_actor "$subscriber" "SELECT outcome FROM orch_lease.commit_stage_cas('11', $zombie, 'queued', 'running')")
[ "$zombie_commit" = lease_lost ] || fail "the zombie's commit with token $zombie answered $zombie_commit"
commit=$(as_actor "$subscriber" "SELECT outcome FROM orch_lease.commit_stage_cas('11', $new, 'queued', 'running')")
[ "$commit" = applied ] || fail "the new holder's commit answered $commit"
ok "the zombie's commit (token $zombie) is lease_lost, the new holder's applies"
# The carried lease is the old worker's still: held to others, ended by the worker's next incarnation.
other=$(as_actor "$subscriber" "SELECT outcome FROM orch_lease.transition_lease_acquire('12', 'w2', 1, 'boot-2')")
[ "$other" = held ] || fail "the carried lease on 12 answered $other to another boot"
as_actor "$subscriber" "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1b', 'worker-1')" >/dev/null
PGPORT=$subscriber check "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = '12'" 0 \
    "recover on the subscriber did not end the old incarnation's lease"
ok "the carried lease (12) is held to others and ended by the worker's recover"
PGPORT=$subscriber check "SELECT count(*) FROM orch_lease.generation_mark" 1 "adopt_moved_data left the old server's generation"
echo "logical-move: $passed passed, 0 failed"
