\set item random(1, 100000)
SELECT stage FROM bench_task WHERE id = :item;
WITH granted AS (INSERT INTO raw_lease (work_item, token, owner, owner_pid, owner_boot_id)
                 VALUES (:item::text, nextval('raw_token'), 'bench', 1, 'bench-boot') ON CONFLICT DO NOTHING RETURNING token),
     logged AS (INSERT INTO raw_event (event, work_item, outcome, actor, new_owner, new_token, by_role)
                SELECT 'acquired', :item::text, 'acquired', 'bench', 'bench', token, current_user FROM granted)
SELECT coalesce((SELECT token FROM granted), 0) AS tok \gset
WITH moved AS (UPDATE bench_task SET stage = 'queued' WHERE id = :item AND stage = 'queued' RETURNING id),
     ended AS (DELETE FROM raw_lease WHERE work_item = :item::text AND token = :tok AND EXISTS (SELECT FROM moved)
               RETURNING token),
     logged AS (INSERT INTO raw_event (event, work_item, outcome, actor, old_token, stage_from, stage_to, by_role)
                SELECT 'cas_applied', :item::text, 'applied', 'bench', token, 'queued', 'queued', current_user FROM ended)
SELECT count(*) FROM ended;
