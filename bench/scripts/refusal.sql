SELECT outcome FROM orch_lease.transition_lease_acquire('-1', 'bench', 1, 'bench-boot');
