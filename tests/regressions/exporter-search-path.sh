#!/usr/bin/env bash
# Red team of #34 (F15b): postgres_exporter runs contrib/prometheus/queries.yaml as a pg_monitor login under
# the database's search_path, which the database's owner sets. An owner holding no orch_lease role plants
# functions, aggregates, operators and a type in a schema put before pg_catalog; every query of the file, run
# as the exporter, must still answer and reach none of them. The plants are shown to work first (a plain
# `left(...)` and `=` of the exporter reach them). Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
cd "$(dirname "$0")/../.."
db=red34_exporter
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "DO \$\$BEGIN CREATE ROLE red34_owner LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE red34_exporter LOGIN IN ROLE pg_monitor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "CREATE DATABASE $db OWNER red34_owner" >/dev/null
trap 'q -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
# Leases to report: one of a boot that is not session-bound (its liveness is read from orch_lease.boot).
q -U postgres -d "$db" -c "CREATE EXTENSION orch_lease" \
  -c "SELECT count(*) FROM orch_lease.transition_lease_recover('red34-b1', 'red34')" \
  -c "SELECT outcome FROM orch_lease.transition_lease_acquire('red34-item', 'w', 1, 'red34-b1')" >/dev/null
q -U red34_owner -d "$db" >/dev/null <<'SQL'
CREATE SCHEMA tools;
GRANT USAGE ON SCHEMA tools TO PUBLIC;
CREATE TABLE tools.loot (who name, what text);
GRANT INSERT ON tools.loot TO PUBLIC;
CREATE FUNCTION tools.spy(what text) RETURNS boolean LANGUAGE sql AS
  $$ INSERT INTO tools.loot VALUES (current_user, what) RETURNING true $$;
CREATE FUNCTION tools.left(t text, n integer) RETURNS text LANGUAGE sql AS
  $$ SELECT CASE WHEN tools.spy('left') THEN pg_catalog.left(t, n) END $$;
CREATE FUNCTION tools.regexp_replace(a text, b text, c text, d text) RETURNS text LANGUAGE sql AS
  $$ SELECT CASE WHEN tools.spy('regexp_replace') THEN pg_catalog.regexp_replace(a, b, c, d) END $$;
CREATE FUNCTION tools.text_eq(a text, b text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT tools.spy('= (text)') AND pg_catalog.texteq(a, b) $$;
CREATE OPERATOR tools.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tools.text_eq);
CREATE FUNCTION tools.bool_eq(a boolean, b boolean) RETURNS boolean LANGUAGE sql AS
  $$ SELECT tools.spy('= (boolean)') AND pg_catalog.booleq(a, b) $$;
CREATE OPERATOR tools.= (LEFTARG = boolean, RIGHTARG = boolean, FUNCTION = tools.bool_eq);
CREATE FUNCTION tools.int8_le(a bigint, b integer) RETURNS boolean LANGUAGE sql AS
  $$ SELECT tools.spy('<=') AND pg_catalog.int84le(a, b) $$;
CREATE OPERATOR tools.<= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = tools.int8_le);
CREATE FUNCTION tools.counting(n bigint) RETURNS bigint LANGUAGE sql AS
  $$ SELECT CASE WHEN tools.spy('count') THEN n OPERATOR(pg_catalog.+) 1 END $$;
CREATE AGGREGATE tools.count(*) (SFUNC = tools.counting, STYPE = bigint, INITCOND = 0);
CREATE FUNCTION tools.larger(a numeric, b numeric) RETURNS numeric LANGUAGE sql STRICT AS
  $$ SELECT CASE WHEN tools.spy('max') THEN pg_catalog.numeric_larger(a, b) END $$;
CREATE AGGREGATE tools.max(numeric) (SFUNC = tools.larger, STYPE = numeric);
CREATE FUNCTION tools.larger8(a float8, b float8) RETURNS float8 LANGUAGE sql STRICT AS
  $$ SELECT CASE WHEN tools.spy('max') THEN pg_catalog.float8larger(a, b) END $$;
CREATE AGGREGATE tools.max(float8) (SFUNC = tools.larger8, STYPE = float8);
CREATE FUNCTION tools.adding(s numeric, n bigint) RETURNS numeric LANGUAGE sql AS
  $$ SELECT CASE WHEN tools.spy('sum') THEN s OPERATOR(pg_catalog.+) n END $$;
CREATE AGGREGATE tools.sum(bigint) (SFUNC = tools.adding, STYPE = numeric, INITCOND = 0);
CREATE DOMAIN tools.float8 AS text CHECK (tools.spy('float8'));
SQL
q -U postgres -d "$db" -c "ALTER DATABASE $db SET search_path = tools, pg_catalog, public" >/dev/null
failed=0
# The plants work: the exporter's own unqualified calls reach them.
q -U red34_exporter -d "$db" -c "SELECT left('abc', 1), 'a' = 'a'::text" >/dev/null
planted=$(q -U postgres -d "$db" -c "SELECT count(*) FROM tools.loot WHERE who = 'red34_exporter'")
if [ "$planted" != 2 ]; then
    echo "FAIL: the planted left() and = were not reached by an unqualified call ($planted of 2): the test proves nothing"
    failed=$((failed + 1))
fi
q -U postgres -d "$db" -c "TRUNCATE tools.loot" >/dev/null
queries=0
while IFS= read -r query; do
    queries=$((queries + 1))
    if ! out=$(q -U red34_exporter -d "$db" -c "$query" 2>&1); then
        echo "FAIL: query $queries failed as the exporter: $out"
        failed=$((failed + 1))
    fi
done < <(sed -n 's/^  query: "\(.*\)"$/\1/p' contrib/prometheus/queries.yaml)
families=$(grep -c '^[a-z_]*:$' contrib/prometheus/queries.yaml)
if [ "$queries" -ne "$families" ] || [ "$queries" -eq 0 ]; then
    echo "FAIL: read $queries queries of the $families families in queries.yaml"
    failed=$((failed + 1))
fi
reached=$(q -U postgres -d "$db" -c "SELECT string_agg(DISTINCT what, ', ') FROM tools.loot WHERE who = 'red34_exporter'")
if [ -n "$reached" ]; then
    echo "FAIL: the exporter's queries ran what the database owner planted: $reached"
    failed=$((failed + 1))
fi
[ "$failed" -eq 0 ] || exit 1
echo "ok: $queries exporter queries under a planted search_path reached nothing planted"
