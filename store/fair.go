package store

import "strings"

// Fair claims.
//
// A claim shares its slots among users by turns: every user's oldest
// runnable job first, then every user's second oldest, and so on, so one
// user's backlog of 10,000 jobs no longer comes strictly before anybody
// else's next job. Within a turn, users take their places round robin: the
// users after the one served last (ClaimRequest.UserAfter, bytewise order)
// come first, so a claim of one job alternates between users instead of
// always serving the user whose backlog is oldest.
//
// The users with runnable jobs are found by a loose index scan over
// jobs_user_claimable_idx, one probe per user, walked from the greatest
// user_id down: each probe lands on that user's newest waiting job, which a
// burn-down (oldest first) reaches last, so the probes do not step over the
// dead index entries that claimed jobs leave at each user's head. Each
// user's turns are then read past the cursor (After), as the single queue
// order was. Nothing is locked until the picked rows are known; they are
// then locked by their tuple ids with SKIP LOCKED, so a claim locks only
// the jobs it takes.

// claimableRow is the predicate of the queue's partial indexes
// (jobs_claimable_idx, jobs_user_claimable_idx): jobs PENDING, or PROCESSING
// waiting for a retry, that nobody holds, whenever they become due.
const claimableRow = `status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL`

// claimSQLs holds the claim for each [after][capped].
var claimSQLs = [2][2]string{
	{claimSQL(false, false), claimSQL(false, true)},
	{claimSQL(true, false), claimSQL(true, true)},
}

// claimSQL builds the claim. Parameters: $1 N, $2 lease seconds, $3 worker,
// $4 UserAfter; with after, $5 and $6 the cursor (run_after, id); when
// capped, the cap last ($5 or $7).
//
// share, how many turns each user offers, is twice an even share of the N
// slots (at least one, at most N): enough that users with fewer jobs than
// their share, or rows another worker is locking, rarely leave the claim
// short, while a claim of 8 among 1,000 users reads each user's head only.
//
// The outer LIMIT $1 changes nothing (turns never exceed N) but gives the
// planner a bound: it estimates a LIMIT it cannot evaluate as 10% of the
// user's rows, and for a user with a backlog of 1M jobs that made the plan
// look costly enough for PostgreSQL to JIT-compile it, 475 ms for a claim
// that runs in 5.
//
// With one user waiting (a single tenant's burn-down, say) the turns are
// that user's queue order, and the claim locks them straight from the
// user's index range as it scans, the way the single queue did: no sort,
// no second visit of each row. The other branch runs only with two users
// or more. (Its subqueries are aggregates because PostgreSQL evaluates a
// LIMIT's subquery even when the branch's one-time filter is false.)
//
// With a cap, a user offers no more turns than the cap minus the jobs of
// theirs that hold a lease now; Claim runs such claims one at a time (an
// advisory lock), so two workers never both fill the same user's last slot.
func claimSQL(after, capped bool) string {
	past, limit := "", "$5"
	if after {
		past, limit = ` AND (j.run_after, j.id) > ($5, $6)`, "$7"
	}
	offers := `
	offers AS MATERIALIZED (
		SELECT w.user_id, s.n AS turns FROM waiting w CROSS JOIN share s
	),`
	if capped {
		offers = `
	leased AS MATERIALIZED (
		SELECT user_id, count(*) AS n FROM jobs
		WHERE lease_owner IS NOT NULL
		GROUP BY user_id
	),
	offers AS MATERIALIZED (
		SELECT w.user_id, greatest(0, least(s.n, ` + limit + ` - COALESCE(l.n, 0))) AS turns
		FROM waiting w CROSS JOIN share s
		LEFT JOIN leased l ON l.user_id = w.user_id
	),`
	}
	return `
	WITH RECURSIVE users(user_id) AS (
		(SELECT user_id FROM jobs WHERE ` + claimableRow + ` ORDER BY user_id DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT j.user_id FROM jobs j
			WHERE ` + prefixed("j", claimableRow) + ` AND j.user_id < u.user_id
			ORDER BY j.user_id DESC LIMIT 1)
		FROM users u WHERE u.user_id IS NOT NULL
	),
	waiting AS MATERIALIZED (
		SELECT user_id FROM users WHERE user_id IS NOT NULL
	),
	share AS (
		SELECT least($1, ceil(2.0 * $1 / greatest(count(*), 1)))::int AS n FROM waiting
	),` + offers + `
	turns AS MATERIALIZED (
		SELECT o.user_id, t.tid, t.turn
		FROM offers o CROSS JOIN LATERAL (
			SELECT * FROM (
				SELECT j.ctid AS tid, row_number() OVER (ORDER BY j.run_after, j.id) AS turn
				FROM jobs j
				WHERE j.user_id = o.user_id AND ` + prefixed("j", claimableRow) + ` AND j.run_after <= now()` + past + `
				ORDER BY j.run_after, j.id
				LIMIT o.turns
			) t
			LIMIT $1
		) t
		WHERE o.turns > 0
	),
	picked AS MATERIALIZED (
		(SELECT * FROM (
			SELECT j.id, j.run_after FROM jobs j
			WHERE (SELECT count(*) FROM offers) = 1
				AND j.user_id = (SELECT min(user_id) FROM offers)
				AND ` + prefixed("j", claimableRow) + ` AND j.run_after <= now()` + past + `
			ORDER BY j.run_after, j.id
			LIMIT (SELECT min(turns) FROM offers)
			FOR UPDATE SKIP LOCKED
		) alone
		LIMIT $1)
	UNION ALL
		SELECT * FROM (
			SELECT j.id, j.run_after FROM jobs j
			WHERE (SELECT count(*) FROM offers) > 1
				AND j.ctid = ANY(ARRAY(
					SELECT tid FROM turns
					ORDER BY turn, user_id COLLATE "C" <= $4, user_id COLLATE "C"
					LIMIT $1))
				AND ` + prefixed("j", claimableRow) + ` AND j.run_after <= now()
			FOR UPDATE SKIP LOCKED
		) shared
	)
	UPDATE jobs j SET
		status = 'PROCESSING',
		attempts = j.attempts + 1,
		started_at = COALESCE(j.started_at, now()),
		lease_owner = gen_random_uuid(),
		lease_expires_at = now() + make_interval(secs => $2),
		worker_id = $3,
		updated_at = now(),
		version = j.version + 1
	FROM picked
	WHERE j.id = picked.id
	RETURNING j.id, j.user_id, j.type, j.input, j.attempts, j.max_attempts, j.lease_owner, j.created_at, picked.run_after`
}

// prefixed qualifies the columns of claimableRow with a table alias.
func prefixed(alias, cond string) string {
	cond = strings.Replace(cond, "status", alias+".status", 1)
	return strings.Replace(cond, "lease_owner", alias+".lease_owner", 1)
}

// userCapLock is the advisory lock (pg_advisory_xact_lock) under which
// capped claims run one at a time: a claim's count of a user's leased jobs
// must include every claim committed before it.
const userCapLock int64 = 0x6a6f62736361703a // "jobscap:"

// NextUserAfter is the ClaimRequest.UserAfter for the claim after one that
// asked with prev and got got: the user served last in that claim's order
// (the last of the users who took the most turns, in round-robin order
// after prev). With nothing claimed it stays prev.
func NextUserAfter(prev string, got []Claimed) string {
	taken := map[string]int{}
	most := 0
	for _, c := range got {
		taken[c.UserID]++
		most = max(most, taken[c.UserID])
	}
	last, found := prev, false
	for u, n := range taken {
		if n == most && (!found || roundRobinBefore(prev, last, u)) {
			last, found = u, true
		}
	}
	return last
}

// roundRobinBefore reports whether a comes before b in the round-robin
// order that starts after prev: users after prev ascending, then the rest
// ascending (bytewise, as the claim's COLLATE "C").
func roundRobinBefore(prev, a, b string) bool {
	if (a > prev) != (b > prev) {
		return a > prev
	}
	return a < b
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
