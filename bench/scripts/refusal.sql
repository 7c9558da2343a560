SELECT outcome FROM orch_lease.transition_lease_acquire('0', 'bench', 1, 'bench-boot');
