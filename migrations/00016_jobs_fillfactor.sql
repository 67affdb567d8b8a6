-- +goose Up
-- New pages of jobs keep 70% of their room (fillfactor 30, was 50) for the
-- row versions a job's claim and outcome write.
--
-- Why (bench/README.md, "Flat as history grows"): a job row is inserted
-- small (PENDING, ~165 bytes with its header) and ends about twice that
-- (its result, timestamps, worker). At fillfactor 50 a page takes ~24 new
-- rows, and their claimed and finished versions do not all fit beside them:
-- 30% of the burn-down's updates were not HOT. A row that moves leaves room
-- on its old page, so once the table holds history, the free space map
-- hands those old pages to new jobs: a burn-down beside 5M finished jobs
-- spread its 300k rows over 85k pages instead of 21k, and paid for it in
-- buffer reads and full-page images (WAL 1.2-2.4 KB per job instead of
-- 1.1 KB). At fillfactor 30, 96-99% of the updates are HOT, finished pages
-- keep no room a new row may take, and new jobs fill new pages: the same
-- burn-down wrote 0.93-1.03 KB per job beside the history and 0.93 KB on
-- an empty table. Existing pages are not rewritten (no lock held long).
ALTER TABLE jobs SET (fillfactor = 30);

-- +goose Down
ALTER TABLE jobs SET (fillfactor = 50);
