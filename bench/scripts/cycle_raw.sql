\set item random(1, 100000)
INSERT INTO raw_lease (work_item, token, owner, owner_pid, owner_boot_id)
VALUES (:item::text, nextval('raw_token'), 'bench', 1, 'bench-boot') ON CONFLICT DO NOTHING;
BEGIN;
UPDATE bench_task SET stage = 'queued' WHERE id = :item AND stage = 'queued';
DELETE FROM raw_lease WHERE work_item = :item::text;
COMMIT;
