\set item random(1, 100000)
SELECT outcome FROM orch_lease.update_task_stage_cas(:item::text, 'queued', 'queued');
