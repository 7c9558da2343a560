-- orch_lease 0.4.0 -> 0.5.0. Hand-written; never edit it once released. The result must equal a fresh
-- 0.5.0 install: scripts/upgrade-test.sh compares them. Each change has its own headed section below.
\echo Use "ALTER EXTENSION orch_lease UPDATE TO '0.5.0'" to load this file. \quit
