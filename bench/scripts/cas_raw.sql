\set item random(1, 100000)
UPDATE bench_task SET stage = 'queued' WHERE id = :item AND stage = 'queued';
