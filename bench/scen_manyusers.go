package main

import (
	"context"
	"fmt"
	"time"
)

// ManyUsersResult is the many-users burn-down: the same number of no-op jobs
// owned by one user and spread over many, burnt down by one jobsd worker in
// alternating runs. The fair claim shares its slots among the users who
// wait, so its cost can grow with their number.
type ManyUsersResult struct {
	Jobs          int                   `json:"jobs"`
	Users         int                   `json:"users"`
	Concurrency   int                   `json:"jobsdWorkerConcurrency"`
	Runs          map[string][]BurnDown `json:"runs"` // "1 user" (one more) and "N users", in the order they ran
	JobsPerSec    map[string]Spread     `json:"jobsPerSec"`
	ManyOverOne   Spread                `json:"manyOverOne"`
	AuditFailures int                   `json:"auditFailures"`
}

type manyUsersOpts struct {
	jobs, users int
	concurrency int // scenario 2's jobsd x1
	pairs       int
	timeout     time.Duration
}

// runManyUsersScenario burns down o.jobs jobs of one user and the same
// number over o.users users (user-0, user-1, ... in turn) alternately, one
// user first and last, o.pairs runs of many users.
func runManyUsersScenario(ctx context.Context, e *env, o manyUsersOpts) (*ManyUsersResult, error) {
	url, pool, err := e.createJobsDB(ctx, "manyusers")
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	res := &ManyUsersResult{Jobs: o.jobs, Users: o.users, Concurrency: o.concurrency,
		Runs: map[string][]BurnDown{}}
	burn := func(users int) func(int) (float64, error) {
		key := fmt.Sprintf("%d users", users)
		if users == 1 {
			key = "1 user"
		}
		return func(i int) (float64, error) {
			b, err := jobsdBurnDown(ctx, e, pool, url, o.jobs, users, 1, o.concurrency, o.timeout)
			if err != nil {
				return 0, err
			}
			b.Contender = "jobsd x1, " + key
			res.Runs[key] = append(res.Runs[key], b)
			if !b.AuditOK {
				res.AuditFailures++
			}
			logf("  run %d %-10s %8.0f jobs/s  %.2fs first pick to last completion (%.2fs wall)  audit: %s",
				i+1, key, b.JobsPerSec, b.Seconds, b.WallSeconds, b.Audit)
			return b.JobsPerSec, nil
		}
	}
	ratios, err := alternate(o.pairs, burn(1), burn(o.users))
	if err != nil {
		return nil, err
	}
	res.JobsPerSec, res.ManyOverOne = jobsPerSec(res.Runs), spread(ratios)
	return res, nil
}
