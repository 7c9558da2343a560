\set item random(1, 100000)
SELECT stage FROM bench_task WHERE id = :item;
WITH granted AS (INSERT INTO raw_lease (work_item, token, owner, owner_pid, owner_boot_id)
                 VALUES (:item::text, nextval('raw_token'), 'bench', 1, 'bench-boot') ON CONFLICT DO NOTHING RETURNING token)
SELECT coalesce((SELECT token FROM granted), 0) AS tok \gset
WITH moved AS (UPDATE bench_task SET stage = 'queued' WHERE id = :item AND stage = 'queued' RETURNING id)
DELETE FROM raw_lease WHERE work_item = :item::text AND token = :tok AND EXISTS (SELECT FROM moved);
