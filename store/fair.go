package store

// Fair claims.
//
// A claim shares its slots among users by turns: every user's oldest
// runnable job first, then every user's second oldest, and so on, so one
// user's backlog of 10,000 jobs no longer comes strictly before anybody
// else's next job. Within a turn, users take their places round robin,
// starting after the user served last (ClaimRequest.UserAfter), so claims
// of one job go to each user in turn instead of always to the user whose
// backlog is oldest.
//
// The users with waiting jobs are found by a loose index scan over
// job_queue_user_claimable_idx, one probe per user, walked from the greatest
// user_id down: each probe lands on that user's newest waiting job, which a
// burn-down (oldest first) reaches last, so the probes do not step over the
// dead index entries that claimed jobs leave at each user's head. Each
// probe orders by the whole index key, (user_id, run_after, id) descending,
// which only job_queue_user_claimable_idx gives without a sort (on the
// one-table design, ordered by user_id alone, the planner took an index of
// finished jobs once its statistics lagged a burn-down: a claim of 2,000
// among 1,000 users went from 85 to 220 ms). The round
// robin goes the same way: first the users below UserAfter, descending,
// then from the greatest down to UserAfter itself. The walk stops after N
// users (a claim cannot serve more): a claim of 8 jobs among 1,000 waiting
// users probes 8 of them, and the next claim goes on from where this one's
// jobs ended. (A walk of 2N users took a claim of 500 among 1,000 users
// from 31 to 45 ms at 1M rows, for places that only a user with nothing to
// offer could free; the second turns of the users walked fill those.)
//
// Each user then offers turns: its oldest waiting jobs past the cursor
// (After), as the single queue order was. Nothing is locked until the
// picked rows are known; they are then locked by their tuple ids with SKIP
// LOCKED, so a claim locks only the jobs it takes.

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
// slots among the users walked (at least two while N allows, at most N):
// enough that users with fewer jobs than their share, or none past the
// cursor, rarely leave the claim short.
//
// The outer LIMIT $1 around each user's turns changes nothing (turns never
// exceed N) but gives the planner a bound: it estimates a LIMIT it cannot
// evaluate as 10% of the user's rows, and for a user with a backlog of 1M
// jobs that made the plan look costly enough for PostgreSQL to JIT-compile
// it, 475 ms for a claim that runs in 5.
//
// With one user waiting (a single tenant's burn-down, say) the turns are
// that user's queue order, and the claim locks them straight from the
// user's index range as it scans, the way the single queue did: no sort,
// no second visit of each row. The turns are then not even computed (a
// one-time filter): the shared branch's join read them first, and
// computing them, an index scan and a sort of every row claimed, took a
// quarter of a one-user claim of 1,400 jobs. The other branch runs only with two users
// or more. (Its subqueries are aggregates because PostgreSQL evaluates a
// LIMIT's subquery even when the branch's one-time filter is false.)
//
// With a cap, a user offers no more turns than the cap minus the jobs of
// theirs that hold a lease now; Claim runs such claims one at a time (an
// advisory lock), so two workers never both fill the same user's last slot.
//
// Each row returned carries its place in the claim's order (0 when one
// user was waiting), from which NextUserAfter finds the user served last.
func claimSQL(after, capped bool) string {
	past, userPast, limit := claimCursor(after)
	leased, room, offers := claimCap(capped, limit)
	// The walk visits users with a job due now: a user whose only waiting
	// jobs are retries not yet due would take a place and offer nothing.
	due := `run_after <= now()`
	jdue := `j.run_after <= now()`
	return `
	WITH RECURSIVE below(user_id, n) AS (
		(SELECT user_id, 1 FROM job_queue WHERE ` + due + ` AND user_id < $4 ORDER BY user_id DESC, run_after DESC, id DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT j.user_id FROM job_queue j WHERE ` + jdue + ` AND j.user_id < b.user_id ORDER BY j.user_id DESC, j.run_after DESC, j.id DESC LIMIT 1), b.n + 1
		FROM below b WHERE b.user_id IS NOT NULL
	),
	above(user_id, n) AS (
		(SELECT user_id, 1 FROM job_queue WHERE ` + due + ` AND user_id >= $4 ORDER BY user_id DESC, run_after DESC, id DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT j.user_id FROM job_queue j WHERE ` + jdue + ` AND j.user_id < a.user_id AND j.user_id >= $4
			ORDER BY j.user_id DESC, j.run_after DESC, j.id DESC LIMIT 1), a.n + 1
		FROM above a WHERE a.user_id IS NOT NULL
	),` + leased + `
	waiting AS MATERIALIZED (
		SELECT user_id, row_number() OVER (ORDER BY phase, n) AS pos FROM (
			SELECT * FROM (
				SELECT user_id, 1 AS phase, n FROM below WHERE user_id IS NOT NULL
				UNION ALL
				SELECT user_id, 2, n FROM above WHERE user_id IS NOT NULL
			) u
			` + room + `
			LIMIT $1
		) w
	),
	share AS (
		SELECT least($1, ceil(2.0 * $1 / greatest(count(*), 1)))::int AS n FROM waiting
	),` + offers + `
	turns AS MATERIALIZED (
		SELECT o.pos, t.tid, t.turn
		FROM offers o CROSS JOIN LATERAL (
			SELECT * FROM (
				SELECT j.ctid AS tid, row_number() OVER (ORDER BY j.run_after, j.id) AS turn
				FROM job_queue j
				WHERE j.user_id = o.user_id AND j.run_after <= now()` + userPast + `
				ORDER BY j.run_after, j.id
				LIMIT o.turns
			) t
			LIMIT $1
		) t
		WHERE o.turns > 0 AND (SELECT count(*) FROM offers) > 1
	),
	top AS MATERIALIZED (
		SELECT tid, row_number() OVER (ORDER BY turn, pos) AS place
		FROM turns
		ORDER BY turn, pos
		LIMIT $1
	),
	picked AS MATERIALIZED (
		(SELECT *, 0::bigint AS place FROM (
			SELECT j.id, j.run_after, j.ctid AS tid FROM job_queue j
			WHERE (SELECT count(*) FROM offers) = 1
				AND j.user_id = (SELECT min(user_id) FROM offers)
				AND j.run_after <= now()` + past + `
			ORDER BY j.run_after, j.id
			LIMIT (SELECT min(turns) FROM offers)
			FOR UPDATE SKIP LOCKED
		) alone
		LIMIT $1)
	UNION ALL
		SELECT shared.id, shared.run_after, shared.tid, top.place FROM (
			SELECT j.id, j.run_after, j.ctid AS tid FROM job_queue j
			WHERE (SELECT count(*) FROM offers) > 1
				AND j.ctid = ANY(ARRAY(SELECT tid FROM top))
				AND j.run_after <= now()
			FOR UPDATE SKIP LOCKED
		) shared JOIN top ON top.tid = shared.tid
	)
	` + claimPicked
}

// claimCursor is claimSQL's cursor, as conditions on the queue order
// (past) and within one user's jobs (userPast), both empty without after,
// and the placeholder of the cap, which follows the cursor's.
func claimCursor(after bool) (past, userPast, limit string) {
	if !after {
		return "", "", "$5"
	}
	// The same cursor within one user's jobs, led by the user so that
	// only job_queue_user_claimable_idx can take it as its index condition.
	// Written as past, it let the planner walk job_queue_claimable_idx from
	// the cursor through every user's jobs for each user: with the
	// cursor's estimate at one row (every job created in one statement
	// has one run_after), a claim of 2,000 among 1,000 users took 450
	// ms instead of 75.
	return ` AND (j.run_after, j.id) > ($5, $6)`, ` AND (j.user_id, j.run_after, j.id) > (o.user_id, $5, $6)`, "$7"
}

// claimCap is claimSQL's per-user cap, whose placeholder is limit: leased
// counts each user's leased jobs (capped claims only), and room keeps users
// at their cap out of the walk, so that they take none of its N places (a
// walk of capped users would leave the others waiting); offers gives each
// user walked its turns, no more than its room under the cap.
func claimCap(capped bool, limit string) (leased, room, offers string) {
	if !capped {
		return "", "WHERE true", `
	offers AS MATERIALIZED (
		SELECT w.user_id, w.pos, s.n AS turns FROM waiting w CROSS JOIN share s
	),`
	}
	leased = `
	leased AS MATERIALIZED (` + leasedPerUser + `
	),`
	room = `WHERE COALESCE((SELECT l.n FROM leased l WHERE l.user_id = u.user_id), 0) < ` + limit
	offers = `
	offers AS MATERIALIZED (
		SELECT w.user_id, w.pos, greatest(0, least(s.n, ` + limit + ` - COALESCE(l.n, 0))) AS turns
		FROM waiting w CROSS JOIN share s
		LEFT JOIN leased l ON l.user_id = w.user_id
	),`
	return leased, room, offers
}

// windowClaimSQLs holds the window claim for each [after].
var windowClaimSQLs = [2]string{windowClaimSQL(false), windowClaimSQL(true)}

// windowClaimSQL builds the window claim (ClaimRequest.Users): the next
// $1 runnable jobs in the queue order past the cursor, read from
// job_queue_claimable_idx the way the single queue read them. When they belong
// to at least $4 users, the users the worker knows to be waiting, the
// window is what a full claim would take from interleaved users, and each
// user's first $1 ÷ $4 of them are claimed; when they belong to fewer (one
// user's backlog fills the window), nothing is, and the worker makes a
// full claim. Parameters: $1 N, $2 lease seconds, $3 worker, $4 users;
// with after, $5 and $6 the cursor.
//
// It exists for the many-user backlog, where the full claim's walk and
// turns cost two index probes per user on every claim: with 1,000 users
// interleaved in the queue, a claim of 2,000 took 95 ms that way and 50
// ms this way (most of it the UPDATE that both share).
func windowClaimSQL(after bool) string {
	past := ""
	if after {
		past = ` AND (j.run_after, j.id) > ($5, $6)`
	}
	return `
	WITH ahead AS MATERIALIZED (
		SELECT j.ctid AS tid, j.user_id, j.run_after, j.id FROM job_queue j
		WHERE j.run_after <= now()` + past + `
		ORDER BY j.run_after, j.id
		LIMIT $1
	),
	picked AS MATERIALIZED (
		SELECT j.id, j.run_after, j.ctid AS tid, 0::bigint AS place FROM job_queue j
		WHERE j.ctid = ANY(ARRAY(
			SELECT tid FROM (
				SELECT tid, row_number() OVER (PARTITION BY user_id ORDER BY run_after, id) AS turn FROM ahead
			) r
			WHERE turn <= ceil($1::numeric / $4)))
			AND (SELECT count(DISTINCT user_id) FROM ahead) >= $4
			AND j.run_after <= now()
		FOR UPDATE SKIP LOCKED
	)
	` + claimPicked
}

// leasedPerUser counts each user's jobs under a claim's lease: the jobs of
// the live claims (job_leases) whose row still carries a live lease. A
// claim's ids keep the jobs that ended since; the fence leaves them out.
// Both arrays are built first (InitPlans), so the jobs are read by their key
// whatever the statistics say: joined, the planner hashed the leases
// against a sequential scan of jobs.
const leasedPerUser = `
		SELECT j.user_id, count(*) AS n FROM jobs j
		WHERE j.id = ANY(ARRAY(SELECT unnest(ids) FROM job_leases))
			AND j.lease_owner = ANY(ARRAY(SELECT lease FROM job_leases))
		GROUP BY j.user_id`

// userCapLock is the advisory lock (pg_advisory_xact_lock) under which
// capped claims run one at a time: a claim's count of a user's leased jobs
// must include every claim committed before it.
const userCapLock int64 = 0x6a6f62736361703a // "jobscap:"

// NextUserAfter is the ClaimRequest.UserAfter for the claim after one that
// asked with prev and got got: the user of the job in the last place of
// that claim's order. With nothing claimed it stays prev.
func NextUserAfter(prev string, got []Claimed) string {
	last, place := prev, int64(-1)
	for _, c := range got {
		if c.place > place {
			last, place = c.UserID, c.place
		}
	}
	return last
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
