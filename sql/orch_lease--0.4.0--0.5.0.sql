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
