-- The actor cycle in two round trips: acquire answers the task's stage, and an id with no task row is
-- not_found (no lease, no token drawn).
SET client_min_messages = warning;
DROP TABLE IF EXISTS pulls;
CREATE TABLE pulls (id text PRIMARY KEY, stage text NOT NULL);
INSERT INTO pulls VALUES ('PR-3', 'open'), ('PR-4', 'open');
SELECT orch_lease.register_task_table('pulls');
SELECT count(*) FROM orch_lease.transition_lease_recover('orch-boot-1', 'orch', 505);

-- A grant says the stage it read after the grant; the refusal says nothing about it.
SELECT acquired, outcome, stage FROM orch_lease.transition_lease_acquire('PR-3', 'orch', 505, 'orch-boot-1');
SELECT acquired, outcome, holder, stage FROM orch_lease.transition_lease_acquire('PR-3', 'orch', 505, 'orch-boot-1');

-- Arguments swapped (the owner where the work item goes): no task has that id, so no lease and no token.
SELECT last_value AS tokens_before FROM orch_lease.token_seq \gset
SELECT acquired, outcome, token, holder, stage FROM orch_lease.transition_lease_acquire('orch', 'PR-3', 505, 'orch-boot-1');
SELECT acquired, outcome, token, stage FROM orch_lease.transition_lease_acquire_session('PR-404', 'orch');
SELECT last_value = :tokens_before AS no_token_drawn FROM orch_lease.token_seq;
SELECT work_item FROM orch_lease.transition_lease ORDER BY 1;
SELECT event, outcome, work_item, actor FROM orch_lease.lease_event WHERE event = 'refused' AND outcome = 'not_found' ORDER BY event_id;

-- A table whose rows come after their leases opts out: the grant then has no stage to say.
SELECT orch_lease.register_task_table('pulls', rows_created_later => true);
SELECT acquired, outcome, stage FROM orch_lease.transition_lease_acquire_session('PR-5', 'orch');
INSERT INTO pulls VALUES ('PR-5', 'open');
SELECT orch_lease.register_task_table('pulls');

-- The kill-switch passes through, and still says the stage the actor acts on.
SET orch_lease.enabled = off;
SELECT acquired, outcome, token, stage FROM orch_lease.transition_lease_acquire('PR-4', 'orch', 505, 'orch-boot-1');
RESET orch_lease.enabled;

-- A refusal writes nothing: no row, no lock, so no transaction id. (The polling refusals are counted by a
-- sequence, which writes one call in 32 and after a checkpoint: in this fresh database, not this call.)
BEGIN;
SELECT outcome FROM orch_lease.transition_lease_acquire('PR-3', 'poller', 505, 'orch-boot-1');
SELECT pg_current_xact_id_if_assigned() IS NULL AS refusal_wrote_nothing;
COMMIT;
