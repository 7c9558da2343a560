SELECT coalesce(token, 0) AS tok, acquired::int AS got FROM orch_lease.transition_lease_acquire('0', 'bench', 1, 'bench-boot') \gset
\if :got
UPDATE hot_guard SET holders = holders + 1, max_seen = greatest(max_seen, holders + 1), grants = grants + 1;
UPDATE hot_guard SET holders = holders - 1;
SELECT outcome FROM orch_lease.commit_stage_cas('0', :tok, 'queued', 'queued');
\endif
