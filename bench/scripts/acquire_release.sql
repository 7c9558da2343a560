\set item random(1000001, 1100000)
SELECT coalesce(token, 0) AS tok FROM orch_lease.transition_lease_acquire(:item::text, 'bench', 1, 'bench-boot') \gset
SELECT orch_lease.transition_lease_release(:item::text, :tok);
