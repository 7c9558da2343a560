\set item random(1, 100000)
SELECT pg_try_advisory_lock(:item);
UPDATE bench_task SET stage = 'queued' WHERE id = :item AND stage = 'queued';
SELECT pg_advisory_unlock(:item);
