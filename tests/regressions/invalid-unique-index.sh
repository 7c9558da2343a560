#!/usr/bin/env bash
# Red team 2, G11 (#27): the "id column unique by itself" check took an INVALID unique index — what a
# failed CREATE UNIQUE INDEX CONCURRENTLY leaves behind, precisely because ids are duplicated — for
# uniqueness: one key, two rows, and the CAS wrote both. Registration must refuse it (42P10), and a
# registered table whose only unique index becomes invalid (REINDEX CONCURRENTLY failing) is refused
# at the next call. Runs in a database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_invalid_unique_index
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
# || true: an error is the answer here (its SQLSTATE), checked next.
answer() { "$PSQL" -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -d "$db" -c "$1" 2>&1 | sed 's/^ERROR: *//' || true; }
red() { echo "invalid-unique-index: $*"; exit 1; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE dup (id bigint NOT NULL, stage text NOT NULL)" \
  -c "INSERT INTO dup VALUES (5, 'queued'), (5, 'queued')" >/dev/null
"$PSQL" -X -q -d "$db" -c "CREATE UNIQUE INDEX CONCURRENTLY dup_id ON dup (id)" >/dev/null 2>&1 && red "the index was built"
[ "$(q -c "SELECT indisvalid FROM pg_index WHERE indexrelid = 'dup_id'::regclass")" = f ] || red "the index is valid"
got=$(answer "SELECT orch_lease.register_task_table('dup')")
[ "$got" = 42P10 ] || red "registering a table whose only unique index is invalid: $got"
# A valid index registered, then made invalid behind the registration's back (as a failed REINDEX
# CONCURRENTLY would leave it): the next call is refused.
q -c "DROP INDEX dup_id" -c "DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup)" \
  -c "CREATE UNIQUE INDEX dup_id ON dup (id)" -c "SELECT orch_lease.register_task_table('dup')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('5', 'queued', 'running')")
[ "$got" = applied ] || red "CAS with a valid index: $got"
q -c "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'dup_id'::regclass" \
  -c "ALTER TABLE dup ALTER COLUMN stage SET DEFAULT 'queued'" >/dev/null # the second: an invalidation
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('5', 'running', 'done')")
[ "$got" = 42P10 ] || red "CAS once the only unique index is invalid: $got"
echo "invalid-unique-index: an invalid unique index does not make the id column unique"
