\set item random(1, 100000)
SELECT coalesce(token, 0) AS tok, stage FROM orch_lease.transition_lease_acquire(:item::text, 'bench', 1, 'bench-boot') \gset
SELECT outcome FROM orch_lease.commit_stage_cas(:item::text, :tok, :stage, 'queued');
