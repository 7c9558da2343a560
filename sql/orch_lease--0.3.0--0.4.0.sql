-- orch_lease 0.3.0 -> 0.4.0: one owner means one owner. Leases keyed by the task id's canonical form and
-- held by a role; boots registered by a role; a bypass guard that runs no user code with raised rights;
-- NOTIFY payloads that always fit; a history that survives dump and restore; actors that recover their
-- own instances and read only their own role's leases.
-- Hand-written; never edit it once released. The result must equal a fresh 0.4.0 install:
-- scripts/upgrade-test.sh compares them.

-- A lease is its holder's capability: the role that acquired it. For a lease from 0.3.0 that is the
-- role its grant's history names, when the history still has it; NULL otherwise (whoever has the token).
ALTER TABLE orch_lease.transition_lease ADD COLUMN holder_role text;
COMMENT ON COLUMN orch_lease.transition_lease.holder_role IS
    'The role that acquired the lease: only it may release it or commit under it (NULL: acquired before 0.4.0).';
UPDATE orch_lease.transition_lease l
   SET holder_role = granted.by_role
  FROM (SELECT DISTINCT ON (new_token) new_token, by_role
          FROM orch_lease.lease_event
         WHERE event IN ('acquired', 'reclaimed') AND new_token IS NOT NULL
         ORDER BY new_token, at DESC) granted
 WHERE granted.new_token = l.token;

ALTER TABLE orch_lease.boot ADD COLUMN registered_by text;
COMMENT ON COLUMN orch_lease.boot.registered_by IS
    'The role that registered this boot: only it (or an orch_lease_admin) recovers its instance (NULL: before 0.4.0).';
-- Two running processes with one instance name: recover refuses while the live boot's session is
-- connected; takeover supersedes it on purpose.
ALTER TABLE orch_lease.boot ADD COLUMN registered_session text;
COMMENT ON COLUMN orch_lease.boot.registered_session IS
    'The database session that registered this boot (session:<backend pid>:<start>): while it is connected, recover of the instance refuses (NULL: registered by a takeover, by an admin for another role, or before 0.4.0).';
CREATE FUNCTION orch_lease.transition_lease_takeover(boot_id text, instance text, pid integer DEFAULT NULL)
RETURNS SETOF orch_lease.transition_lease
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'transition_lease_takeover_wrapper';
REVOKE ALL ON FUNCTION orch_lease.transition_lease_takeover(text, text, integer) FROM PUBLIC;

-- The reaper's age_s is the status view's type: numeric, three decimals (double precision before). A new
-- result type means DROP and CREATE: the EXECUTE grants a site gave the reaper (its cron role) are carried
-- over. (A user's view or SQL-standard function over it stops the update with 2BP01: drop it first.)
DO $reap$
DECLARE
    grantees text[];
    grantee text;
BEGIN
    SELECT pg_catalog.array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                              ELSE pg_catalog.quote_ident(r.rolname) END)
      INTO grantees
      FROM pg_catalog.pg_proc p
     CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE p.oid = 'orch_lease.transition_lease_reap(integer)'::pg_catalog.regprocedure
       AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner;
    DROP FUNCTION orch_lease.transition_lease_reap(integer);
    CREATE FUNCTION orch_lease.transition_lease_reap(max_running_s integer)
    RETURNS TABLE (work_item text, kind text, token bigint, owner text, owner_pid integer, owner_boot_id text,
                   acquired_at timestamp with time zone, age_s numeric)
    VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'transition_lease_reap_wrapper';
    REVOKE ALL ON FUNCTION orch_lease.transition_lease_reap(integer) FROM PUBLIC;
    FOREACH grantee IN ARRAY coalesce(grantees, '{}') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_reap(integer) TO %s', grantee);
    END LOOP;
END
$reap$;
GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_reap(integer) TO orch_lease_admin;

-- One task, one key: every spelling of a task id is one lease.
CREATE FUNCTION orch_lease.work_item_key(work_item text) RETURNS text
STABLE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'work_item_key_wrapper';
REVOKE ALL ON FUNCTION orch_lease.work_item_key(text) FROM PUBLIC;
-- Leases held across the upgrade take their canonical key. An id the task table's id type rejects, or
-- two leases on one task, stop the upgrade with what to do.
DO $$
DECLARE
    lease record;
    key text;
BEGIN
    FOR lease IN SELECT work_item, token FROM orch_lease.transition_lease LOOP
        BEGIN
            key := orch_lease.work_item_key(lease.work_item);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'orch_lease 0.4.0: the lease on work item "%" (token %) is not an id of the registered task table',
                            lease.work_item, lease.token
                  USING ERRCODE = '55000',
                        HINT = 'Remove that lease as a superuser (DELETE FROM orch_lease.transition_lease WHERE work_item = ...), then update again.';
        END;
        IF key <> lease.work_item THEN
            IF EXISTS (SELECT FROM orch_lease.transition_lease WHERE work_item = key) THEN
                RAISE EXCEPTION 'orch_lease 0.4.0: work items "%" and "%" are one task, and both are leased',
                                lease.work_item, key
                      USING ERRCODE = '55000',
                            HINT = 'Two actors hold this task: remove one of the two leases as a superuser, then update again.';
            END IF;
            UPDATE orch_lease.transition_lease SET work_item = key WHERE work_item = lease.work_item;
        END IF;
    END LOOP;
END
$$;

-- A restored history goes on numbering after the restored rows (and one restored by 0.3.0, whose dump
-- left the sequence behind, is repaired here).
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event_event_id_seq', '');
SELECT pg_catalog.setval('orch_lease.lease_event_event_id_seq',
                         greatest(max(e.event_id), (SELECT last_value FROM orch_lease.lease_event_event_id_seq)))
  FROM orch_lease.lease_event e HAVING max(e.event_id) > 0;

-- The alert: sent by the statement that records a takeover, not by a trigger (a restored history
-- announces nothing), with every text value cut to 120 characters, so a takeover never fails on
-- NOTIFY's limit; payload format version 2, one NOTIFY per statement (built by the library).
DROP TRIGGER announce ON orch_lease.lease_event;
DROP FUNCTION orch_lease.announce_event();

-- Running counts: every event is counted in event_count, one row per backend slot (no row two sessions
-- update), whatever the history keeps; the metrics read only these. The counts so far (the pruned ones
-- and the history's own rows) become slot 0.
ALTER TABLE orch_lease.event_count ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE orch_lease.event_count ALTER COLUMN shard DROP DEFAULT;
ALTER TABLE orch_lease.event_count DROP CONSTRAINT event_count_pkey,
                                   ADD PRIMARY KEY (event, outcome, shard);
INSERT INTO orch_lease.event_count AS c (event, outcome, shard, n)
SELECT event, outcome, 0, count(*) FROM orch_lease.lease_event GROUP BY event, outcome
    ON CONFLICT (event, outcome, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
COMMENT ON TABLE orch_lease.event_count IS
    'Running counts of every lease event, whatever the history keeps: one row per (event, outcome, backend slot), so no two sessions ever update one row; the metrics add them up.';

-- Prune removes superseded boots no lease names any more, too, and leaves the counts alone.
CREATE OR REPLACE FUNCTION orch_lease.transition_lease_prune(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    retention interval := coalesce(older_than,
                                   current_setting('orch_lease.history_retention', true)::interval,
                                   interval '7 days');
    removed bigint;
    cutoff timestamptz;
    in_use text[];
BEGIN
    IF retention < interval '0' THEN
        RAISE EXCEPTION 'orch_lease: older_than must not be negative, not %', retention
              USING ERRCODE = '22023';
    END IF;
    -- The cut-off is a value, not a volatile call inside the DELETEs: Citus refuses those (docs/scale-out.md).
    cutoff := clock_timestamp() - retention;
    WITH gone AS (DELETE FROM orch_lease.lease_event WHERE at < cutoff RETURNING 1)
    SELECT count(*) INTO removed FROM gone;
    -- The boots leases still name, read first: Citus deletes from a reference table (the boots) only
    -- with no distributed table (the leases) in the statement. No new lease can name a superseded boot.
    in_use := ARRAY(SELECT DISTINCT l.owner_boot_id FROM orch_lease.transition_lease l
                     WHERE l.owner_boot_id IS NOT NULL);
    DELETE FROM orch_lease.boot b WHERE b.superseded_at < cutoff AND b.boot_id <> ALL (in_use);
    -- Counts a transaction made in a row of its own (shard below 0: a prepared transaction held its
    -- slot, or committed after its snapshot) join slot 0, so such rows do not pile up; the metrics' sums
    -- do not move. Nothing waits: a row locked right now, or slot 0 while another prune folds into it
    -- (its slot lock, class "cnts"), is left for the next prune.
    IF pg_catalog.pg_try_advisory_xact_lock(1668183155, 0) THEN
        WITH folded AS (
            DELETE FROM orch_lease.event_count c
             WHERE c.ctid = ANY (ARRAY(SELECT o.ctid FROM orch_lease.event_count o WHERE o.shard < 0
                                         FOR UPDATE SKIP LOCKED))
            RETURNING c.event, c.outcome, c.n)
        INSERT INTO orch_lease.event_count AS c (event, outcome, shard, n)
        SELECT f.event, f.outcome, 0, sum(f.n) FROM folded f GROUP BY f.event, f.outcome
            ON CONFLICT (event, outcome, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention) and boots superseded before then, and folds counts made in transactions'' own rows into slot 0; returns how many events.';

COMMENT ON FUNCTION orch_lease.boot_liveness(text) IS
    'Liveness of a boot: live, stale (superseded, or its session gone), NULL when never registered.';

-- The bypass guard: a C trigger that runs as the role writing the row (no more SECURITY DEFINER).
CREATE OR REPLACE FUNCTION orch_lease.bypass_guard() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'bypass_guard_wrapper';
ALTER FUNCTION orch_lease.bypass_guard() SECURITY INVOKER RESET ALL;
COMMENT ON FUNCTION orch_lease.bypass_guard() IS
    'The bypass guard trigger (installed by install_bypass_guard): notices or refuses stage writes outside the CAS.';
COMMENT ON TABLE orch_lease.bypass_log IS
    'Stage writes that bypassed the CAS while the bypass guard was in warn mode, with the role that wrote them.';
COMMENT ON FUNCTION orch_lease.register_task_table(regclass, name, name) IS
    'Registers the application table whose stage the CAS writes: the caller must own it, and its id column must be unique.';

-- What each role sees: actors their own role's leases and history; tokens are capabilities.
CREATE OR REPLACE VIEW orch_lease.transition_lease_status WITH (security_barrier) AS
SELECT l.work_item,
       l.owner,
       l.owner_pid,
       l.owner_boot_id,
       b.instance,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
              OR l.holder_role = CURRENT_USER THEN l.token END AS token,
       l.scope,
       l.acquired_at,
       round(extract(epoch FROM clock_timestamp() - l.acquired_at), 3) AS age_s,
       coalesce(orch_lease.boot_liveness(l.owner_boot_id), 'unknown') AS liveness,
       l.holder_role
  FROM orch_lease.transition_lease l
  LEFT JOIN orch_lease.boot b ON b.boot_id = l.owner_boot_id
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR l.holder_role = CURRENT_USER;
COMMENT ON VIEW orch_lease.transition_lease_status IS
    'Every held lease with its owner, age and liveness (live; stale = boot superseded or session gone; unknown = boot never registered). Actors see their own role''s leases only.';

CREATE VIEW orch_lease.lease_history WITH (security_barrier) AS
SELECT e.event_id, e.at, e.event, e.work_item, e.old_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.old_token END AS old_token,
       e.old_boot_id, e.new_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.new_token END AS new_token,
       e.reason, e.outcome, e.actor, e.stage_from, e.stage_to, e.by_role
  FROM orch_lease.lease_event e
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR e.by_role = CURRENT_USER;
COMMENT ON VIEW orch_lease.lease_history IS
    'The lease history as the reader may see it: actors see the events their own role caused, without tokens.';

-- Metrics: the new outcome retry is counted too, and the counters read only the running counts.
CREATE OR REPLACE FUNCTION orch_lease.transition_lease_metrics()
RETURNS TABLE (metric text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH counted AS (SELECT event, outcome, n FROM orch_lease.event_count),
    series (metric, label, event, outcome) AS (VALUES
        ('orch_lease_grants_total', 'acquired', 'acquired', NULL),
        ('orch_lease_grants_total', 'reclaimed', 'reclaimed', 'reclaimed'),
        ('orch_lease_refusals_total', 'held', 'refused', 'held'),
        ('orch_lease_refusals_total', 'busy', 'refused', 'busy'),
        ('orch_lease_refusals_total', 'superseded', 'refused', 'superseded'),
        ('orch_lease_refusals_total', 'retry', 'refused', 'retry'),
        ('orch_lease_releases_total', 'released', 'released', NULL),
        ('orch_lease_reclaims_total', 'stale', 'reclaimed', NULL),
        ('orch_lease_reclaims_total', 'ceiling', 'reaped', NULL),
        ('orch_lease_reclaims_total', 'manual', 'forced', NULL),
        ('orch_lease_cas_total', 'applied', 'cas_applied', NULL),
        ('orch_lease_cas_total', 'stage_mismatch', 'cas_lost', 'stage_mismatch'),
        ('orch_lease_cas_total', 'lease_lost', 'cas_lost', 'lease_lost'),
        ('orch_lease_cas_total', 'not_found', 'cas_lost', 'not_found'),
        ('orch_lease_cas_total', 'invalid_transition', 'cas_lost', 'invalid_transition'),
        ('orch_lease_cas_total', 'retry', 'cas_lost', 'retry'))
    SELECT s.metric, s.label, coalesce(sum(c.n), 0)::float8
      FROM series s
      LEFT JOIN counted c ON c.event = s.event AND c.outcome = coalesce(s.outcome, c.outcome)
     GROUP BY s.metric, s.label
    UNION ALL
    SELECT 'orch_lease_leases', v.liveness, count(l.work_item)::float8
      FROM (VALUES ('live'), ('stale'), ('unknown')) v (liveness)
      LEFT JOIN orch_lease.transition_lease_status l ON l.liveness = v.liveness
     GROUP BY v.liveness
    UNION ALL
    SELECT 'orch_lease_oldest_live_lease_age_seconds', '',
           coalesce(max(age_s) FILTER (WHERE liveness = 'live'), 0)::float8
      FROM orch_lease.transition_lease_status
     ORDER BY 1, 2
$$;

-- The checkpoint of a long effect: is my lease still held?
CREATE FUNCTION orch_lease.transition_lease_held(work_item text, token bigint) RETURNS boolean
STABLE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'transition_lease_held_wrapper';
REVOKE ALL ON FUNCTION orch_lease.transition_lease_held(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_held(text, bigint) TO orch_lease_actor;
COMMENT ON FUNCTION orch_lease.transition_lease_held(text, bigint) IS
    'Whether the caller''s role still holds the lease on a work item with this token: the checkpoint of a long effect.';

-- Grants. Actors recover their own instances and read only what is theirs; nobody but the extension's
-- owner executes the bypass guard (so nobody attaches it to another table) or the CAS marker.
REVOKE EXECUTE ON FUNCTION orch_lease.stage_write_allowed() FROM orch_lease_actor;
REVOKE EXECUTE ON FUNCTION orch_lease.bypass_guard() FROM orch_lease_admin;
REVOKE EXECUTE ON FUNCTION orch_lease.transition_lease_recover(text, text, integer) FROM orch_lease_admin;
GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_recover(text, text, integer),
    orch_lease.transition_lease_takeover(text, text, integer),
    orch_lease.work_item_key(text)
    TO orch_lease_actor;
REVOKE SELECT ON
    orch_lease.transition_lease, orch_lease.lease_event, orch_lease.event_count, orch_lease.bypass_log
    FROM orch_lease_actor;
GRANT SELECT ON
    orch_lease.transition_lease, orch_lease.lease_event, orch_lease.event_count, orch_lease.bypass_log
    TO orch_lease_admin;
GRANT SELECT ON orch_lease.lease_history TO orch_lease_actor, pg_monitor;

-- Every function says what it is for (\df+).
COMMENT ON FUNCTION orch_lease.transition_lease_acquire(text, text, integer, text, text) IS
    'Asks for the transition lease on a work item; never waits, never raises on contention: acquired, held, reclaimed, busy, retry, superseded, disabled or out_of_scope.';
COMMENT ON FUNCTION orch_lease.transition_lease_acquire_session(text, text, text) IS
    'Asks for a lease that lives as long as the calling database session (not behind a transaction pooler).';
COMMENT ON FUNCTION orch_lease.transition_lease_release(text, bigint) IS
    'Ends the lease on a work item if it is still held with this token; only the role that acquired it may (42501 otherwise).';
COMMENT ON FUNCTION orch_lease.transition_lease_force_release(text, bigint, text) IS
    'For the people on call: ends the lease on a work item (only that token, if given), recorded as forced and announced.';
COMMENT ON FUNCTION orch_lease.update_task_stage_cas(text, text, text, bigint) IS
    'Sets a task''s stage only if it still equals the expected one (and, with a token, while the caller''s role holds its lease): applied, stage_mismatch, not_found, lease_lost, invalid_transition or retry.';
COMMENT ON FUNCTION orch_lease.commit_stage_cas(text, bigint, text, text) IS
    'The lease-guarded stage CAS and the end of that lease in one step; on retry the lease is kept.';
COMMENT ON FUNCTION orch_lease.stage_write_allowed() IS
    'True while the stage CAS is writing or the kill-switch is off; kept for the bypass guard of releases before 0.4.0.';
COMMENT ON FUNCTION orch_lease.transition_lease_recover(text, text, integer) IS
    'At process start: registers a fresh boot of an instance, supersedes the earlier ones and ends their leases (returned); refuses (55006) while the live boot''s session is connected. READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_takeover(text, text, integer) IS
    'Recover on purpose: supersedes the live boot of an instance even while its session is connected (on call; behind a connection pooler). READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_reap(integer) IS
    'The reaper: ends leases of dead holders (stale) and leases held longer than max_running_s (ceiling), each recorded and announced. READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_liveness(text) IS
    'The liveness of the lease on a work item: none, live, stale or unknown.';
COMMENT ON FUNCTION orch_lease.session_alive(text) IS
    'Whether the database session behind a session-bound boot id is still connected (NULL for other boot ids).';
COMMENT ON FUNCTION orch_lease.register_stage_graph(text[], text[]) IS
    'Registers the allowed transitions (''from -> to'') and the terminal stages; an empty list removes the graph.';
COMMENT ON FUNCTION orch_lease.install_bypass_guard(text) IS
    'Installs the bypass guard on the registered task table (warn or reject), or removes it (off); the caller must own the table.';
COMMENT ON FUNCTION orch_lease.work_item_key(text) IS
    'The key orch_lease uses for a work item: the registered id type''s canonical form of it (every spelling of one id is one key).';
