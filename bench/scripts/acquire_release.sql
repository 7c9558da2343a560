\set item random(1, 100000)
SELECT coalesce(token, 0) AS tok FROM orch_lease.transition_lease_acquire('s-' || :item, 'bench', 1, 'bench-boot') \gset
SELECT orch_lease.transition_lease_release('s-' || :item, :tok);
