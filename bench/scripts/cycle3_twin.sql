\set item random(1, 100000)
SELECT stage FROM bench_task WHERE id = :item;
SELECT coalesce(token, 0) AS tok FROM twin.acquire(:item::text, 'bench', 1, 'bench-boot') \gset
SELECT outcome FROM twin.commit(:item::text, :tok, 'queued', 'queued');
