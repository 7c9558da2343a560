-- orch_lease 0.4.0 -> 0.5.0. Hand-written; never edit it once released. The result must equal a fresh
-- 0.5.0 install: scripts/upgrade-test.sh compares them. Each change has its own headed section below.
\echo Use "ALTER EXTENSION orch_lease UPDATE TO '0.5.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------------
-- Issue #29 part A (one key per row, one set of rules per transaction): the registry records the id
-- column's type and type modifier, so that a changed id type asks for a new registration. A table
-- registered before keeps the type it has now (what 0.4.0 keyed by); one that is gone gets NULL.
ALTER TABLE orch_lease.task_table ADD COLUMN id_type regtype, ADD COLUMN id_typmod integer;
COMMENT ON COLUMN orch_lease.task_table.id_type IS
    'The id column''s type and type modifier when it was registered: after a change the table must be registered again.';
UPDATE orch_lease.task_table t
   SET id_type = a.atttypid, id_typmod = a.atttypmod
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = t.relid AND a.attname = t.id_column AND NOT a.attisdropped;

-- #29 part B (trust-b): recover never hangs, prune keeps boots, squatting repair, legacy rows assigned.

-- Prune keeps every boot: a boot forgotten was unknown again, and its zombie's acquires were granted.
-- (Its one definition is in the speed2 section below, which also stops it folding count rows.)

-- The admins' repair for squatting: every boot of an instance becomes a role's.
CREATE  FUNCTION orch_lease."transition_lease_hand_over"(
	"instance" TEXT, /* Option < & str > */
	"to_role" TEXT /* Option < & str > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_hand_over_wrapper';
COMMENT ON FUNCTION orch_lease.transition_lease_hand_over(text, text) IS
    'For the people on call: every boot of an instance becomes the given role''s (the repair for an instance name or boot id another role registered first). Returns how many boots changed hands.';
REVOKE ALL ON FUNCTION orch_lease.transition_lease_hand_over(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_hand_over(text, text) TO orch_lease_admin;

-- Leases and boots from before 0.4.0 name no role: any actor could end such a lease with its (sequential,
-- guessable) token, or acquire under such a boot. They become the role that runs the update's.
UPDATE orch_lease.transition_lease SET holder_role = current_user WHERE holder_role IS NULL;
UPDATE orch_lease.boot SET registered_by = current_user WHERE registered_by IS NULL;

-- ---------------------------------------------------------------------------------------------------
-- Issue #28 (killswitch): the database's kill-switch: one row, written by set_enabled, read by every call;
-- a write reaches every session at its next call (the trigger invalidates the table's cache entry).
-- The switch is recorded in the history (event switched) and announced.
ALTER TABLE orch_lease.lease_event DROP CONSTRAINT lease_event_event_check,
    ADD CONSTRAINT lease_event_event_check CHECK (event IN ('acquired', 'refused', 'released', 'reclaimed',
        'reaped', 'forced', 'cas_applied', 'cas_lost', 'switched'));
CREATE TABLE orch_lease.kill_switch (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled    boolean NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    reason     text NOT NULL
);
COMMENT ON TABLE orch_lease.kill_switch IS
    'The database''s kill-switch, written by orch_lease.set_enabled: at most one row; no row is on, never switched.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.kill_switch', '');
REVOKE ALL ON orch_lease.kill_switch FROM PUBLIC;
GRANT SELECT ON orch_lease.kill_switch TO orch_lease_admin;
CREATE FUNCTION orch_lease.kill_switch_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'kill_switch_changed_wrapper';
REVOKE ALL ON FUNCTION orch_lease.kill_switch_changed() FROM PUBLIC;
COMMENT ON FUNCTION orch_lease.kill_switch_changed() IS
    'Trigger of orch_lease.kill_switch: a write of the switch reaches every session at its next call.';
CREATE TRIGGER kill_switch_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orch_lease.kill_switch
    FOR EACH STATEMENT EXECUTE FUNCTION orch_lease.kill_switch_changed();
CREATE FUNCTION orch_lease.set_enabled("enabled" bool, "reason" TEXT) RETURNS bool
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'set_enabled_wrapper';
REVOKE ALL ON FUNCTION orch_lease.set_enabled(boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.set_enabled(boolean, text) TO orch_lease_admin;
COMMENT ON FUNCTION orch_lease.set_enabled(boolean, text) IS
    'The kill-switch: off (false) or back on (true) for every session of the database at its next call; recorded as switched and announced. Admins only.';
CREATE FUNCTION orch_lease.kill_switch() RETURNS TABLE (
    "enabled" bool, "database_enabled" bool, "session_enabled" bool,
    "changed_at" timestamp with time zone, "changed_by" TEXT, "reason" TEXT)
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'kill_switch_wrapper';
REVOKE ALL ON FUNCTION orch_lease.kill_switch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.kill_switch() TO orch_lease_actor, pg_monitor;
COMMENT ON FUNCTION orch_lease.kill_switch() IS
    'The kill-switch as this session''s calls see it: enabled (both on), database_enabled (set_enabled), session_enabled (orch_lease.enabled), and the last switch.';

-- ---------------------------------------------------------------------------------------------------
-- Issue #26 (speed): the actor cycle in two round trips. An acquire answers the task's stage (read after
-- the grant, in the same call), and with a registered table an id with no row is `not_found` (no lease,
-- no token), unless the table is registered with rows_created_later (a table registered before keeps
-- false: register it again with true if its rows come after their leases).
ALTER TYPE orch_lease.lease_grant ADD ATTRIBUTE stage text;
COMMENT ON COLUMN orch_lease.lease_grant.stage IS
    'The task''s stage as read after the grant, in the same call (acquired, reclaimed, and the pass-through disabled and out_of_scope); NULL on a refusal, and without a registered task table.';
ALTER TABLE orch_lease.task_table ADD COLUMN rows_created_later boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN orch_lease.task_table.rows_created_later IS
    'Whether a task''s row may be created after its lease is taken: acquire then grants on an id with no row (stage NULL) instead of answering not_found.';
DROP FUNCTION orch_lease.register_task_table(regclass, name, name);
CREATE FUNCTION orch_lease.register_task_table(
    task_table regclass, id_column name DEFAULT 'id', stage_column name DEFAULT 'stage',
    rows_created_later boolean DEFAULT false
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_task_table_wrapper';
COMMENT ON FUNCTION orch_lease.register_task_table(regclass, name, name, boolean) IS
    'Registers the application table whose stage the CAS writes: the caller must own it, and its id column must be unique. With rows_created_later, acquire grants on ids with no row yet instead of answering not_found.';
REVOKE ALL ON FUNCTION orch_lease.register_task_table(regclass, name, name, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.register_task_table(regclass, name, name, boolean) TO orch_lease_admin;

-- ---------------------------------------------------------------------------------------------------
-- Issue #26 (speed): a refusal writes nothing. The refusals of a polling fleet (held, busy) are counted
-- by a sequence each (no write per call: nextval is WAL-logged once in 32) instead of an event_count
-- row; the counts already in event_count stay there and the metrics add both.
CREATE SEQUENCE orch_lease.refused_held_count AS bigint;
CREATE SEQUENCE orch_lease.refused_busy_count AS bigint;
COMMENT ON SEQUENCE orch_lease.refused_held_count IS
    'How many acquires were refused held, since 0.5.0 (before: in event_count): not transactional.';
COMMENT ON SEQUENCE orch_lease.refused_busy_count IS
    'How many acquires were refused busy, since 0.5.0 (before: in event_count): not transactional.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.refused_held_count', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.refused_busy_count', '');
REVOKE ALL ON SEQUENCE orch_lease.refused_held_count, orch_lease.refused_busy_count FROM PUBLIC;
-- The metrics add them, and count not_found refusals: transition_lease_metrics, redefined once below
-- (#31's section) with every 0.5.0 series.

-- ---------------------------------------------------------------------------------------------------
-- Issue #27 (tables): any number of task tables. A lease is keyed by (task_table, work_item); every
-- function that takes a work item takes an optional task_table (omitted: the only table registered).
-- The one table 0.4.0 registered stays registered, and its leases and stage graph become its own;
-- leases held while none was registered are keyed to no table (0, shown -), as fresh ones are.
ALTER TABLE orch_lease.task_table DROP COLUMN singleton;
ALTER TABLE orch_lease.task_table ADD PRIMARY KEY (relid);
ALTER TABLE orch_lease.stage_transition ADD COLUMN task_table regclass;
UPDATE orch_lease.stage_transition SET task_table = (SELECT t.relid FROM orch_lease.task_table t);
DELETE FROM orch_lease.stage_transition WHERE task_table IS NULL;
ALTER TABLE orch_lease.stage_transition ALTER COLUMN task_table SET NOT NULL,
    DROP CONSTRAINT stage_transition_pkey, ADD PRIMARY KEY (task_table, from_stage, to_stage);
ALTER TABLE orch_lease.terminal_stage ADD COLUMN task_table regclass;
UPDATE orch_lease.terminal_stage SET task_table = (SELECT t.relid FROM orch_lease.task_table t);
DELETE FROM orch_lease.terminal_stage WHERE task_table IS NULL;
ALTER TABLE orch_lease.terminal_stage ALTER COLUMN task_table SET NOT NULL,
    DROP CONSTRAINT terminal_stage_pkey, ADD PRIMARY KEY (task_table, stage);
ALTER TABLE orch_lease.transition_lease ADD COLUMN task_table regclass;
UPDATE orch_lease.transition_lease SET task_table = coalesce((SELECT t.relid FROM orch_lease.task_table t), 0);
ALTER TABLE orch_lease.transition_lease ALTER COLUMN task_table SET NOT NULL,
    DROP CONSTRAINT transition_lease_pkey, ADD PRIMARY KEY (task_table, work_item);
-- The history names the table from now on (NULL: recorded before 0.5.0).
ALTER TABLE orch_lease.lease_event ADD COLUMN task_table regclass;
COMMENT ON TABLE orch_lease.task_table IS
    'The application tables whose stage the CAS writes, one row per registered table.';
COMMENT ON TABLE orch_lease.stage_transition IS
    'The allowed stage transitions of each task table. None for a table: every transition is allowed.';
COMMENT ON TABLE orch_lease.terminal_stage IS 'Stages no transition of a task table leaves.';
COMMENT ON COLUMN orch_lease.transition_lease.task_table IS
    'The registered task table the work item is a row of (0, shown -, while no table is registered): a lease is keyed by (task_table, work_item).';
COMMENT ON COLUMN orch_lease.lease_event.task_table IS
    'The task table of the work item (NULL: no table was registered, the event concerns no work item, or it was recorded before 0.5.0).';

COMMENT ON FUNCTION orch_lease.register_task_table(regclass, name, name, boolean) IS
    'Registers an application table whose stage the CAS writes (or describes a registered one again): the caller must own it, and its id column must be unique. With rows_created_later, acquire grants on ids with no row yet instead of answering not_found.';
-- Every function that takes a work item gains task_table; the reaper returns it.
-- Each is dropped and created again: the EXECUTE grants a site made on one (a cron role's on the reaper,
-- say) carry over to the new signature, kept in a transaction-local setting until they are made again
-- below; orch_lease's own roles get theirs as a fresh install does.
DO $keep$
BEGIN
    PERFORM pg_catalog.set_config('orch_lease_upgrade.regrant', coalesce((
        SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.new,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END))::text
          FROM (VALUES ('orch_lease.transition_lease_acquire(text,text,integer,text,text)', 'orch_lease.transition_lease_acquire(text,text,integer,text,text,regclass)'),
                     ('orch_lease.transition_lease_acquire_session(text,text,text)', 'orch_lease.transition_lease_acquire_session(text,text,text,regclass)'),
                     ('orch_lease.transition_lease_release(text,bigint)', 'orch_lease.transition_lease_release(text,bigint,regclass)'),
                     ('orch_lease.transition_lease_force_release(text,bigint,text)', 'orch_lease.transition_lease_force_release(text,bigint,text,regclass)'),
                     ('orch_lease.transition_lease_held(text,bigint)', 'orch_lease.transition_lease_held(text,bigint,regclass)'),
                     ('orch_lease.transition_lease_liveness(text)', 'orch_lease.transition_lease_liveness(text,regclass)'),
                     ('orch_lease.update_task_stage_cas(text,text,text,bigint)', 'orch_lease.update_task_stage_cas(text,text,text,bigint,regclass)'),
                     ('orch_lease.commit_stage_cas(text,bigint,text,text)', 'orch_lease.commit_stage_cas(text,bigint,text,text,regclass)'),
                     ('orch_lease.work_item_key(text)', 'orch_lease.work_item_key(text,regclass)'),
                     ('orch_lease.register_stage_graph(text[],text[])', 'orch_lease.register_stage_graph(text[],text[],regclass)'),
                     ('orch_lease.install_bypass_guard(text)', 'orch_lease.install_bypass_guard(text,regclass)'),
                     ('orch_lease.transition_lease_reap(integer)', 'orch_lease.transition_lease_reap(integer)')) n (old, new)
          JOIN pg_catalog.pg_proc p ON p.oid = n.old::pg_catalog.regprocedure
         CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
           AND r.rolname IS DISTINCT FROM 'orch_lease_actor' AND r.rolname IS DISTINCT FROM 'orch_lease_admin'),
        '[]'), true);
END
$keep$;
-- Red team 2, G12 (part 1 of 2, the end of this file has part 2): the functions dropped and created
-- again just below give orch_lease's own roles their EXECUTE as a fresh install does, which undid a site's
-- REVOKE of it (and dropped a site's GRANT of one to them). Kept here: where a site changed what 0.4.0
-- gave orch_lease_actor or orch_lease_admin — the function's initial privilege (pg_init_privs) against
-- its ACL — by function name, role and the statement that made the difference.
DO $site$
BEGIN
    PERFORM pg_catalog.set_config('orch_lease_upgrade.site_acl', coalesce((
        SELECT pg_catalog.json_agg(pg_catalog.json_build_array(d.proname, d.rolname, d.statement))::text FROM (
        SELECT DISTINCT p.proname::text, r.rolname::text,
               CASE WHEN x.initial THEN 'REVOKE' ELSE 'GRANT' END
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_roles r
            ON r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['orch_lease_actor', 'orch_lease_admin']::pg_catalog.name[])
          LEFT JOIN pg_catalog.pg_init_privs i
            ON i.objoid OPERATOR(pg_catalog.=) p.oid
           AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND i.objsubid OPERATOR(pg_catalog.=) 0
         CROSS JOIN LATERAL (SELECT
               EXISTS (SELECT FROM pg_catalog.aclexplode(i.initprivs) g
                        WHERE g.grantee OPERATOR(pg_catalog.=) r.oid
                          AND g.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE') AS initial,
               EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                        WHERE a.grantee OPERATOR(pg_catalog.=) r.oid
                          AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE') AS now) x
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'orch_lease'::pg_catalog.regnamespace
           AND x.initial IS DISTINCT FROM x.now) d (proname, rolname, statement)),
        '[]'), true);
END
$site$;
DROP FUNCTION orch_lease.transition_lease_acquire(text, text, integer, text, text);
DROP FUNCTION orch_lease.transition_lease_acquire_session(text, text, text);
DROP FUNCTION orch_lease.transition_lease_release(text, bigint);
DROP FUNCTION orch_lease.transition_lease_force_release(text, bigint, text);
DROP FUNCTION orch_lease.transition_lease_held(text, bigint);
DROP FUNCTION orch_lease.transition_lease_liveness(text);
DROP FUNCTION orch_lease.update_task_stage_cas(text, text, text, bigint);
DROP FUNCTION orch_lease.commit_stage_cas(text, bigint, text, text);
DROP FUNCTION orch_lease.work_item_key(text);
DROP FUNCTION orch_lease.register_stage_graph(text[], text[]);
DROP FUNCTION orch_lease.install_bypass_guard(text);
DROP FUNCTION orch_lease.transition_lease_reap(integer);
CREATE FUNCTION orch_lease.transition_lease_acquire(
    work_item text,
    owner text,
    owner_pid integer,
    owner_boot_id text,
    scope text DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.lease_grant VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_acquire_wrapper';
CREATE FUNCTION orch_lease.transition_lease_acquire_session(
    work_item text,
    owner text,
    scope text DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.lease_grant VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_acquire_session_wrapper';
CREATE FUNCTION orch_lease.transition_lease_release(
    work_item text,
    token bigint,
    task_table regclass DEFAULT NULL
) RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_release_wrapper';
CREATE FUNCTION orch_lease.transition_lease_force_release(
    work_item text,
    expected_token bigint DEFAULT NULL,
    reason text DEFAULT 'manual',
    task_table regclass DEFAULT NULL
) RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_force_release_wrapper';
CREATE FUNCTION orch_lease.transition_lease_held(
    work_item text,
    token bigint,
    task_table regclass DEFAULT NULL
) RETURNS boolean STABLE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_held_wrapper';
CREATE FUNCTION orch_lease.transition_lease_liveness(
    work_item text,
    task_table regclass DEFAULT NULL
) RETURNS text VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_liveness_wrapper';
CREATE FUNCTION orch_lease.update_task_stage_cas(
    task_id text,
    expected_stage text,
    new_stage text,
    lease_token bigint DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.cas_result VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'update_task_stage_cas_wrapper';
CREATE FUNCTION orch_lease.commit_stage_cas(
    work_item text,
    token bigint,
    expected_stage text,
    new_stage text,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.cas_result VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'commit_stage_cas_wrapper';
CREATE FUNCTION orch_lease.work_item_key(
    work_item text,
    task_table regclass DEFAULT NULL
) RETURNS text STABLE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'work_item_key_wrapper';
CREATE FUNCTION orch_lease.register_stage_graph(
    transitions text[],
    terminal_stages text[] DEFAULT '{}',
    task_table regclass DEFAULT NULL
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_stage_graph_wrapper';
CREATE FUNCTION orch_lease.install_bypass_guard(
    mode text DEFAULT 'warn',
    task_table regclass DEFAULT NULL
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'install_bypass_guard_wrapper';
CREATE FUNCTION orch_lease."transition_lease_reap"(
	"max_running_s" INT /* Option < i32 > */
) RETURNS TABLE (
	"work_item" TEXT,  /* String */
	"kind" TEXT,  /* String */
	"token" bigint,  /* i64 */
	"owner" TEXT,  /* String */
	"owner_pid" INT,  /* i32 */
	"owner_boot_id" TEXT,  /* String */
	"acquired_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"age_s" NUMERIC,  /* AnyNumeric */
	"task_table" regclass  /* task_table :: TableArg */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_reap_wrapper';
CREATE FUNCTION orch_lease.unregister_task_table(task_table regclass) RETURNS void
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'unregister_task_table_wrapper';
COMMENT ON FUNCTION orch_lease.transition_lease_acquire(text, text, integer, text, text, regclass) IS
    'Asks for the transition lease on a work item; never waits, never raises on contention: acquired, held, reclaimed, busy, retry, superseded, disabled or out_of_scope.';
COMMENT ON FUNCTION orch_lease.transition_lease_acquire_session(text, text, text, regclass) IS
    'Asks for a lease that lives as long as the calling database session (not behind a transaction pooler).';
COMMENT ON FUNCTION orch_lease.transition_lease_release(text, bigint, regclass) IS
    'Ends the lease on a work item if it is still held with this token; only the role that acquired it may (42501 otherwise).';
COMMENT ON FUNCTION orch_lease.transition_lease_force_release(text, bigint, text, regclass) IS
    'For the people on call: ends the lease on a work item (only that token, if given), recorded as forced and announced.';
COMMENT ON FUNCTION orch_lease.transition_lease_held(text, bigint, regclass) IS
    'Whether the caller''s role still holds the lease on a work item with this token: the checkpoint of a long effect.';
COMMENT ON FUNCTION orch_lease.transition_lease_reap(integer) IS
    'The reaper: ends leases of dead holders (stale) and leases held longer than max_running_s (ceiling), each recorded and announced. READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_liveness(text, regclass) IS
    'The liveness of the lease on a work item: none, live, stale or unknown.';
COMMENT ON FUNCTION orch_lease.update_task_stage_cas(text, text, text, bigint, regclass) IS
    'Sets a task''s stage only if it still equals the expected one (and, with a token, while the caller''s role holds its lease): applied, stage_mismatch, not_found, lease_lost, invalid_transition or retry.';
COMMENT ON FUNCTION orch_lease.commit_stage_cas(text, bigint, text, text, regclass) IS
    'The lease-guarded stage CAS and the end of that lease in one step; on retry the lease is kept.';
COMMENT ON FUNCTION orch_lease.work_item_key(text, regclass) IS
    'The key orch_lease uses for a work item of a task table (omitted: the only one registered): its id type''s canonical form (every spelling of one id is one key).';
COMMENT ON FUNCTION orch_lease.register_stage_graph(text[], text[], regclass) IS
    'Registers a task table''s allowed transitions (''from -> to'') and terminal stages; an empty list removes its graph.';
COMMENT ON FUNCTION orch_lease.install_bypass_guard(text, regclass) IS
    'Installs the bypass guard on a registered task table (warn or reject), or removes it (off); the caller must own the table.';
COMMENT ON FUNCTION orch_lease.unregister_task_table(regclass) IS
    'Removes a task table''s registration, stage graph and bypass guard; refused (55000) while a lease on it is held.';
REVOKE ALL ON FUNCTION
    orch_lease.transition_lease_acquire(text, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(text, text, text, regclass),
    orch_lease.transition_lease_release(text, bigint, regclass),
    orch_lease.transition_lease_force_release(text, bigint, text, regclass),
    orch_lease.transition_lease_held(text, bigint, regclass),
    orch_lease.transition_lease_liveness(text, regclass),
    orch_lease.update_task_stage_cas(text, text, text, bigint, regclass),
    orch_lease.commit_stage_cas(text, bigint, text, text, regclass),
    orch_lease.work_item_key(text, regclass),
    orch_lease.register_stage_graph(text[], text[], regclass),
    orch_lease.install_bypass_guard(text, regclass),
    orch_lease.transition_lease_reap(integer),
    orch_lease.unregister_task_table(regclass)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_acquire(text, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(text, text, text, regclass),
    orch_lease.transition_lease_release(text, bigint, regclass),
    orch_lease.transition_lease_held(text, bigint, regclass),
    orch_lease.update_task_stage_cas(text, text, text, bigint, regclass),
    orch_lease.commit_stage_cas(text, bigint, text, text, regclass),
    orch_lease.transition_lease_liveness(text, regclass),
    orch_lease.work_item_key(text, regclass)
    TO orch_lease_actor;
GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_force_release(text, bigint, text, regclass),
    orch_lease.transition_lease_reap(integer),
    orch_lease.unregister_task_table(regclass),
    orch_lease.register_stage_graph(text[], text[], regclass),
    orch_lease.install_bypass_guard(text, regclass)
    TO orch_lease_admin;
DO $regrant$
DECLARE
    kept json;
BEGIN
    FOR kept IN SELECT pg_catalog.json_array_elements(
                    pg_catalog.current_setting('orch_lease_upgrade.regrant')::json) LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', kept->>0, kept->>1);
    END LOOP;
END
$regrant$;
-- The history shows the table (the status view shows it too: its one definition is below, #31).
CREATE OR REPLACE VIEW orch_lease.lease_history WITH (security_barrier) AS
SELECT e.event_id, e.at, e.event, e.work_item, e.old_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.old_token END AS old_token,
       e.old_boot_id, e.new_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.new_token END AS new_token,
       e.reason, e.outcome, e.actor, e.stage_from, e.stage_to, e.by_role, e.task_table
  FROM orch_lease.lease_event e
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR e.by_role = CURRENT_USER;

-- ---------------------------------------------------------------------------------------------------
-- #29 item 3 (trust-c): a move by logical replication carries rows, not sequences. A generation drawn at
-- install lives in a sequence and in a row; rows from another server's generation refuse every grant
-- until an admin adopts the data (adopt_moved_data, with the old server's last token).
CREATE SEQUENCE orch_lease.generation AS bigint;
SELECT pg_catalog.setval('orch_lease.generation', 1 + (pg_catalog.random() * 9e18)::bigint);
COMMENT ON SEQUENCE orch_lease.generation IS
    'This database''s generation: a row of orch_lease.generation_mark that differs from it came from another server.';
CREATE TABLE orch_lease.generation_mark (generation bigint PRIMARY KEY);
INSERT INTO orch_lease.generation_mark SELECT last_value FROM orch_lease.generation;
COMMENT ON TABLE orch_lease.generation_mark IS
    'The generation of every server whose leases this database holds: more than its own (logical replication) refuses grants until orch_lease.adopt_moved_data.';
CREATE FUNCTION orch_lease.adopt_moved_data(token_floor bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    floor bigint;
BEGIN
    IF token_floor IS NULL OR token_floor < 0 THEN
        RAISE EXCEPTION 'orch_lease: token_floor must be the old server''s last token (0 or more), got %',
              coalesce(token_floor::text, 'NULL')
              USING ERRCODE = '22023',
                    HINT = 'On the old server: SELECT last_value FROM orch_lease.token_seq. If it is gone, see docs/ha.md.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_subscription s
                WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
                  AND s.subenabled) THEN
        RAISE EXCEPTION 'orch_lease: a subscription of this database is still enabled'
              USING ERRCODE = '55000',
                    HINT = 'Adopt the data once the move is over: stop the actors on the old server, let the subscription catch up, then ALTER SUBSCRIPTION … DISABLE (or DROP it).';
    END IF;
    floor := greatest(token_floor, 1,
                      (SELECT max(l.token) FROM orch_lease.transition_lease l),
                      (SELECT max(greatest(e.old_token, e.new_token)) FROM orch_lease.lease_event e),
                      (SELECT s.last_value FROM orch_lease.token_seq s));
    PERFORM setval('orch_lease.token_seq', floor);
    PERFORM setval('orch_lease.lease_event_event_id_seq',
                   greatest(1, (SELECT max(e.event_id) FROM orch_lease.lease_event e),
                            (SELECT s.last_value FROM orch_lease.lease_event_event_id_seq s)));
    DELETE FROM orch_lease.generation_mark m
     WHERE m.generation <> (SELECT g.last_value FROM orch_lease.generation g);
    INSERT INTO orch_lease.generation_mark SELECT g.last_value FROM orch_lease.generation g
        ON CONFLICT DO NOTHING;
    RETURN floor;
END
$$;
COMMENT ON FUNCTION orch_lease.adopt_moved_data(bigint) IS
    'After a move by logical replication: sets the token and history sequences above the old server''s last token and the data, and lets grants resume.';
REVOKE ALL ON FUNCTION orch_lease.adopt_moved_data(bigint) FROM PUBLIC;
REVOKE ALL ON SEQUENCE orch_lease.generation FROM PUBLIC;
REVOKE ALL ON TABLE orch_lease.generation_mark FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.adopt_moved_data(bigint) TO orch_lease_admin;

-- ---------------------------------------------------------------------------------------------------
-- Red team F12 (trust-c): a label a task table's stage graph names is known by its place in an enum stage
-- type, so a rename that gives its name to another label fails closed too. Written after #27's section:
-- each table's labels are its own, recorded here for the graph of the table registered now.
CREATE TABLE orch_lease.stage_label (
    stage      text NOT NULL,
    rank       integer NOT NULL,
    task_table regclass NOT NULL,
    PRIMARY KEY (task_table, stage)
);
COMMENT ON TABLE orch_lease.stage_label IS
    'For an enum stage type: the place in the enum of each stage a task table''s graph names, when it was registered (a renamed or swapped label fails closed).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.stage_label', '');
REVOKE ALL ON TABLE orch_lease.stage_label FROM PUBLIC;
-- The stage column's base type (through domains over domains), as register_stage_graph reads it.
WITH RECURSIVE stage_type (relid, typid) AS (
    SELECT t.relid, a.atttypid
      FROM orch_lease.task_table t
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid = t.relid AND a.attname = t.stage_column AND NOT a.attisdropped
    UNION ALL
    SELECT s.relid, ty.typbasetype
      FROM stage_type s JOIN pg_catalog.pg_type ty ON ty.oid = s.typid
     WHERE ty.typtype = 'd')
INSERT INTO orch_lease.stage_label (stage, rank, task_table)
SELECT e.enumlabel, e.rank, s.relid
  FROM stage_type s
 CROSS JOIN LATERAL (
       SELECT enumlabel::text, (row_number() OVER (ORDER BY enumsortorder))::integer AS rank
         FROM pg_catalog.pg_enum
        WHERE enumtypid = s.typid) e
 WHERE e.enumlabel IN (SELECT g.from_stage FROM orch_lease.stage_transition g WHERE g.task_table = s.relid
                       UNION SELECT g.to_stage FROM orch_lease.stage_transition g WHERE g.task_table = s.relid
                       UNION SELECT g.stage FROM orch_lease.terminal_stage g WHERE g.task_table = s.relid);

-- ---------------------------------------------------------------------------------------------------
-- #34 (closers-a, red team F15b): boot_liveness runs under its caller's search_path (the status view
-- calls it, read by pg_monitor scrapers): its body names no operator unqualified.
CREATE OR REPLACE FUNCTION orch_lease.boot_liveness(owner_boot_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    -- Run under the caller's search_path (the status view calls it, read by pg_monitor scrapers): no
    -- unqualified operator, not even CASE x WHEN's = (red team of #34, F15b).
    SELECT CASE WHEN s.alive THEN 'live'
                WHEN NOT s.alive THEN 'stale'
                ELSE (SELECT CASE WHEN b.superseded_at IS NULL THEN 'live' ELSE 'stale' END
                        FROM orch_lease.boot b WHERE b.boot_id OPERATOR(pg_catalog.=) $1) END
      FROM (SELECT orch_lease.session_alive($1) AS alive) s
$$;

-- ---------------------------------------------------------------------------------------------------
-- Issue #30 item 6 (initial privileges): an update script that grants a site's own EXECUTE again (the
-- 0.3.0 -> 0.4.0 one on transition_lease_reap, its cron role's; #27's section above on every function it
-- recreates) makes PostgreSQL record that grant as the extension's initial privilege (pg_init_privs).
-- pg_dump leaves initial privileges out, so a dump and restore lost the site's grant. Every function's
-- initial privileges become a fresh install's: only its owner, orch_lease's roles and PUBLIC; the site's
-- grants stay in the functions' ACLs, where pg_dump finds them.
UPDATE pg_catalog.pg_init_privs i
   SET initprivs = (SELECT pg_catalog.array_agg(u.item ORDER BY u.n)
                      FROM pg_catalog.unnest(i.initprivs) WITH ORDINALITY u (item, n)
                     WHERE (SELECT e.grantee FROM pg_catalog.aclexplode(ARRAY[u.item]) e LIMIT 1)
                           OPERATOR(pg_catalog.=) ANY (ARRAY[0, p.proowner,
                                'orch_lease_actor'::pg_catalog.regrole, 'orch_lease_admin'::pg_catalog.regrole,
                                'pg_monitor'::pg_catalog.regrole]::pg_catalog.oid[]))
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'orch_lease'::pg_catalog.regnamespace
   AND i.objoid OPERATOR(pg_catalog.=) p.oid
   AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND i.objsubid OPERATOR(pg_catalog.=) 0
   AND i.privtype OPERATOR(pg_catalog.=) 'e';

-- ---------------------------------------------------------------------------------------------------
-- Issue #31 (contact): outcomes that tell a mistake from a lost race, and refusals that say what to do.
-- The stage CAS answers not_held (a token the item never had, or a lease its holder already ended),
-- counted apart from lease_lost; commit_stage_cas refuses a NULL token while orch_lease is on; the hints
-- of register_task_table and of an acquire under another role's boot: all in the library, only the
-- comments change here.
COMMENT ON FUNCTION orch_lease.update_task_stage_cas(text, text, text, bigint, regclass) IS
    'Sets a task''s stage only if it still equals the expected one (and, with a token, while the caller''s role holds its lease): applied, stage_mismatch, not_found, lease_lost, not_held, invalid_transition or retry.';
COMMENT ON FUNCTION orch_lease.commit_stage_cas(text, bigint, text, text, regclass) IS
    'The lease-guarded stage CAS and the end of that lease in one step; on retry the lease is kept. The token is required while orch_lease is on (update_task_stage_cas writes without a lease).';
-- An integer work item (acquire(131, ...)) found no function (42883, a generic "does not exist"): these
-- overloads take it only to say what to do. They key nothing: one spelling of an id is its text.
CREATE FUNCTION orch_lease.transition_lease_acquire(work_item bigint, owner text, owner_pid integer,
                                                    owner_boot_id text, scope text DEFAULT NULL,
                                                    task_table regclass DEFAULT NULL)
RETURNS orch_lease.lease_grant
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'orch_lease: work_item must be text, not a number'
          USING ERRCODE = '42804',
                DETAIL = format('Called with work_item %s.', work_item),
                HINT = format('Pass the id as text: %L, or %s::text.', work_item, work_item);
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_acquire(bigint, text, integer, text, text, regclass) IS
    'Refuses an integer work item (42804) with a hint: pass the id as text.';
CREATE FUNCTION orch_lease.transition_lease_acquire_session(work_item bigint, owner text,
                                                            scope text DEFAULT NULL,
                                                            task_table regclass DEFAULT NULL)
RETURNS orch_lease.lease_grant
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM orch_lease.transition_lease_acquire(work_item, owner, 1, 'session', scope, task_table)
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_acquire_session(bigint, text, text, regclass) IS
    'Refuses an integer work item (42804) with a hint: pass the id as text.';
REVOKE ALL ON FUNCTION
    orch_lease.transition_lease_acquire(bigint, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(bigint, text, text, regclass)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_acquire(bigint, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(bigint, text, text, regclass)
    TO orch_lease_actor;
-- The status view says when the session that registered a holder's boot is gone (session_gone).
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
       l.holder_role,
       (SELECT s.enabled FROM orch_lease.kill_switch() s) AS enabled,
       l.task_table,
       NOT orch_lease.session_alive(b.registered_session) AS session_gone
  FROM orch_lease.transition_lease l
  LEFT JOIN orch_lease.boot b ON b.boot_id = l.owner_boot_id
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR l.holder_role = CURRENT_USER;
COMMENT ON VIEW orch_lease.transition_lease_status IS
    'Every held lease with its task table, owner, age and liveness (live; stale = boot superseded or session gone; unknown = boot never registered), whether orch_lease is on for the reader''s calls (the kill-switch), and whether the database session that registered the holder''s boot is gone (session_gone; NULL when none was recorded). Actors see their own role''s leases only.';
-- The metrics count not_held apart (OrchLeaseLostCommit watches lease_lost only): transition_lease_metrics
-- is defined once below, with the counters of #26 (speed2).

-- ---------------------------------------------------------------------------------------------------
-- Issue #26, second round (speed2): the logical-move check is kept per backend. A write of the
-- generation marks (a subscription's apply or initial copy included: the triggers fire ALWAYS)
-- invalidates it in every session, so an acquire no longer reads the marks on every call.
CREATE TRIGGER generation_mark_changed AFTER INSERT OR UPDATE OR DELETE ON orch_lease.generation_mark
    FOR EACH ROW EXECUTE FUNCTION orch_lease.kill_switch_changed();
CREATE TRIGGER generation_mark_truncated AFTER TRUNCATE ON orch_lease.generation_mark
    FOR EACH STATEMENT EXECUTE FUNCTION orch_lease.kill_switch_changed();
ALTER TABLE orch_lease.generation_mark ENABLE ALWAYS TRIGGER generation_mark_changed;
ALTER TABLE orch_lease.generation_mark ENABLE ALWAYS TRIGGER generation_mark_truncated;
COMMENT ON FUNCTION orch_lease.kill_switch_changed() IS
    'Trigger of orch_lease.kill_switch and orch_lease.generation_mark: a write of either reaches every session at its next call.';

-- ---------------------------------------------------------------------------------------------------
-- Issue #26, second round (speed2): counts that write nothing per event. Every (event, outcome) is
-- counted by a sequence of its own, listed by the view orch_lease.event_counter (a view: logical
-- replication copies no view rows onto a subscriber's own); refused/held and refused/busy keep the
-- sequences of the first round. event_count's rows, one per backend slot, are gone: each sequence goes on
-- from the sum the table held (refused/held and refused/busy: that sum added to what their sequences
-- counted since), so no counter goes down across the update.
CREATE VIEW orch_lease.event_counter AS
SELECT v.event, v.outcome, v.sequence_name,
       pg_catalog.to_regclass(pg_catalog.format('orch_lease.%I', v.sequence_name)) AS counter
  FROM (VALUES
        ('acquired', 'acquired', 'acquired_count'),
        ('refused', 'held', 'refused_held_count'),
        ('refused', 'busy', 'refused_busy_count'),
        ('refused', 'superseded', 'refused_superseded_count'),
        ('refused', 'retry', 'refused_retry_count'),
        ('refused', 'not_found', 'refused_not_found_count'),
        ('released', 'released', 'released_count'),
        ('reclaimed', 'reclaimed', 'reclaimed_count'),
        ('reclaimed', 'recovered', 'reclaimed_recovered_count'),
        ('reclaimed', 'stale', 'reclaimed_stale_count'),
        ('reaped', 'ceiling', 'reaped_ceiling_count'),
        ('forced', 'forced', 'forced_count'),
        ('cas_applied', 'applied', 'cas_applied_count'),
        ('cas_lost', 'stage_mismatch', 'cas_lost_stage_mismatch_count'),
        ('cas_lost', 'lease_lost', 'cas_lost_lease_lost_count'),
        ('cas_lost', 'not_held', 'cas_lost_not_held_count'),
        ('cas_lost', 'not_found', 'cas_lost_not_found_count'),
        ('cas_lost', 'invalid_transition', 'cas_lost_invalid_transition_count'),
        ('cas_lost', 'retry', 'cas_lost_retry_count'),
        ('switched', 'on', 'switched_on_count'),
        ('switched', 'off', 'switched_off_count')) v (event, outcome, sequence_name);
COMMENT ON VIEW orch_lease.event_counter IS
    'The sequence that counts each (event, outcome), whatever the history keeps; the metrics read them.';
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM orch_lease.event_counter LOOP
        EXECUTE pg_catalog.format('CREATE SEQUENCE IF NOT EXISTS orch_lease.%I AS bigint', c.sequence_name);
        EXECUTE pg_catalog.format('COMMENT ON SEQUENCE orch_lease.%I IS %L', c.sequence_name,
            pg_catalog.format('How many %s events with outcome %s: not transactional (orch_lease.event_counter).',
                              c.event, c.outcome));
        EXECUTE pg_catalog.format('REVOKE ALL ON SEQUENCE orch_lease.%I FROM PUBLIC', c.sequence_name);
        PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.format('orch_lease.%I', c.sequence_name), '');
    END LOOP;
END
$$;
SELECT pg_catalog.setval(c.counter, s.n + coalesce(pg_catalog.pg_sequence_last_value(c.counter), 0))
  FROM orch_lease.event_counter c
  JOIN (SELECT e.event, e.outcome, sum(e.n)::bigint AS n FROM orch_lease.event_count e
         GROUP BY e.event, e.outcome) s ON s.event = c.event AND s.outcome = c.outcome
 WHERE s.n > 0;
-- Out of the extension first, which also takes it off the tables pg_dump dumps (DROP alone would not).
ALTER EXTENSION orch_lease DROP TABLE orch_lease.event_count;
DROP TABLE orch_lease.event_count;
GRANT SELECT ON orch_lease.event_counter TO orch_lease_admin;
CREATE OR REPLACE FUNCTION orch_lease.transition_lease_prune(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    retention interval := coalesce(older_than,
                                   current_setting('orch_lease.history_retention', true)::interval,
                                   interval '7 days');
    removed bigint;
    cutoff timestamptz;
BEGIN
    IF retention < interval '0' THEN
        RAISE EXCEPTION 'orch_lease: older_than must not be negative, not %', retention
              USING ERRCODE = '22023';
    END IF;
    -- The cut-off is a value, not a volatile call inside the DELETEs: Citus refuses those (docs/scale-out.md).
    cutoff := clock_timestamp() - retention;
    WITH gone AS (DELETE FROM orch_lease.lease_event WHERE at < cutoff RETURNING 1)
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention); returns how many events. The counts are kept apart; superseded boots are kept, so that their processes stay refused.';
CREATE OR REPLACE FUNCTION orch_lease.transition_lease_metrics()
RETURNS TABLE (metric text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH counted AS (SELECT c.event, c.outcome, coalesce(pg_catalog.pg_sequence_last_value(c.counter), 0) AS n
                       FROM orch_lease.event_counter c),
    series (metric, label, event, outcome) AS (VALUES
        ('orch_lease_grants_total', 'acquired', 'acquired', NULL),
        ('orch_lease_grants_total', 'reclaimed', 'reclaimed', 'reclaimed'),
        ('orch_lease_refusals_total', 'held', 'refused', 'held'),
        ('orch_lease_refusals_total', 'busy', 'refused', 'busy'),
        ('orch_lease_refusals_total', 'superseded', 'refused', 'superseded'),
        ('orch_lease_refusals_total', 'retry', 'refused', 'retry'),
        ('orch_lease_refusals_total', 'not_found', 'refused', 'not_found'),
        ('orch_lease_releases_total', 'released', 'released', NULL),
        ('orch_lease_reclaims_total', 'stale', 'reclaimed', NULL),
        ('orch_lease_reclaims_total', 'ceiling', 'reaped', NULL),
        ('orch_lease_reclaims_total', 'manual', 'forced', NULL),
        ('orch_lease_cas_total', 'applied', 'cas_applied', NULL),
        ('orch_lease_cas_total', 'stage_mismatch', 'cas_lost', 'stage_mismatch'),
        ('orch_lease_cas_total', 'lease_lost', 'cas_lost', 'lease_lost'),
        ('orch_lease_cas_total', 'not_held', 'cas_lost', 'not_held'),
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
    UNION ALL
    SELECT m.metric, '', m.value
      FROM orch_lease.kill_switch() s,
           LATERAL (VALUES ('orch_lease_enabled', s.enabled::integer::float8),
                           ('orch_lease_enabled_changed_timestamp_seconds',
                            coalesce(extract(epoch FROM s.changed_at), 0)::float8)) m (metric, value)
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_metrics() IS
    'Counters (grants, refusals, releases, reclaims by kind, CAS outcomes) and gauges (leases by liveness, oldest live lease age, the kill-switch and when it last switched).';

-- ---------------------------------------------------------------------------------------------------
-- Issue #26, second round (speed2): no index of the history by item over every event. Its inserts land
-- on random pages (a full-page image per page after each checkpoint, on every grant and CAS); the CAS's
-- look for a takeover by item and token has an index of the takeovers only.
DROP INDEX orch_lease.lease_event_work_item;
CREATE INDEX lease_event_takeover ON orch_lease.lease_event (work_item, old_token)
    WHERE event IN ('reclaimed', 'reaped', 'forced');

-- ---------------------------------------------------------------------------------------------------
-- Red team 2, G4 (#27): the registry records the id column's number too. Swapping two columns' names
-- (or registering again with another id column while leases were held) silently made every held lease
-- another row's; a column renamed to the registered name is now refused at the next call. A table
-- registered before keeps the column that has its id column's name now (what 0.4.0 keyed by).
ALTER TABLE orch_lease.task_table ADD COLUMN id_attnum smallint;
COMMENT ON COLUMN orch_lease.task_table.id_attnum IS
    'The id column''s number when it was registered: a column renamed to its name is another column, and the table must be registered again.';
UPDATE orch_lease.task_table t
   SET id_attnum = a.attnum
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = t.relid AND a.attname = t.id_column AND NOT a.attisdropped;

-- ---------------------------------------------------------------------------------------------------
-- Red team 2, G12 (part 2 of 2): what a site changed of orch_lease's own roles' EXECUTE carries over to
-- the functions of the same name 0.5.0 created again. Their initial privileges stay a fresh install's,
-- so that pg_dump writes the site's statements and a restore keeps them. A GRANT or REVOKE run by an
-- update script records the function's whole ACL as its initial privileges, a third role's grant
-- included (red team 3, G21): what was recorded before the replay (a fresh install's) is put back.
DO $site$
DECLARE
    kept json;
    fn regprocedure;
    fresh aclitem[];
BEGIN
    FOR kept IN SELECT pg_catalog.json_array_elements(
                    pg_catalog.current_setting('orch_lease_upgrade.site_acl')::json) LOOP
        FOR fn IN SELECT p.oid FROM pg_catalog.pg_proc p
                   WHERE p.pronamespace OPERATOR(pg_catalog.=) 'orch_lease'::pg_catalog.regnamespace
                     AND p.proname OPERATOR(pg_catalog.=) (kept->>0)::pg_catalog.name
                     -- only where the new function differs from what the site made
                     AND EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                                  WHERE a.grantee OPERATOR(pg_catalog.=) (kept->>1)::pg_catalog.regrole
                                    AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')
                         OPERATOR(pg_catalog.=) (kept->>2 OPERATOR(pg_catalog.=) 'REVOKE') LOOP
            fresh := (SELECT i.initprivs FROM pg_catalog.pg_init_privs i
                       WHERE i.objoid OPERATOR(pg_catalog.=) fn
                         AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                         AND i.objsubid OPERATOR(pg_catalog.=) 0);
            EXECUTE pg_catalog.format('%s EXECUTE ON FUNCTION %s %s %I', kept->>2, fn,
                                      CASE kept->>2 WHEN 'REVOKE' THEN 'FROM' ELSE 'TO' END, kept->>1);
            -- no row before (a default ACL): none after
            DELETE FROM pg_catalog.pg_init_privs i
             WHERE i.objoid OPERATOR(pg_catalog.=) fn
               AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objsubid OPERATOR(pg_catalog.=) 0
               AND fresh IS NULL;
            UPDATE pg_catalog.pg_init_privs i
               SET initprivs = fresh
             WHERE i.objoid OPERATOR(pg_catalog.=) fn
               AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objsubid OPERATOR(pg_catalog.=) 0
               AND fresh IS NOT NULL;
        END LOOP;
    END LOOP;
END
$site$;

-- ---------------------------------------------------------------------------------------------------
-- Red team 3, G19: a dump and restore numbers a table's columns anew, without the dropped ones, so a
-- registered id_attnum no longer matched and every call was refused "columns were renamed". The id
-- column's place among the live columns, which a restore keeps, is recorded too: a smaller number at
-- the same place is the same column (the library's same_column says why no other column can pass).
ALTER TABLE orch_lease.task_table ADD COLUMN id_position smallint;
COMMENT ON COLUMN orch_lease.task_table.id_position IS
    'The id column''s place among the live columns when it was registered: a dump and restore (or a Citus shard) numbers columns anew but keeps their places.';
UPDATE orch_lease.task_table t
   SET id_position = (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid OPERATOR(pg_catalog.=) t.relid
                         AND a.attnum OPERATOR(pg_catalog.>) 0
                         AND a.attnum OPERATOR(pg_catalog.<=) t.id_attnum
                         AND NOT a.attisdropped)
 WHERE t.id_attnum IS NOT NULL;
