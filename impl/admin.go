package impl

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/timestamp"
)

// The operator's API (/api/admin/...): any user's job, its attempts and
// events, cancel and requeue, stats and workers. requireAdmin has refused
// everyone else before their request was looked at; store errors reach the
// error table (toAPIError), which answers admin paths with their own texts.

// adminPrefix is where the operator's API lives.
const adminPrefix = "/api/admin/"

// requireAdmin answers 403 to a caller who is not an admin on any admin
// path, before the request's parameters or body are validated: a non-admin
// learns nothing about what the operator's API would accept.
func requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasPrefix(c.Request().URL.Path, adminPrefix) && !principalFrom(c.Request().Context()).Admin {
			return errForbidden
		}
		return next(c)
	}
}

// AdminListJobs pages through every user's jobs, newest first.
func (s *Server) AdminListJobs(ctx context.Context, req server.AdminListJobsRequestObject) (server.AdminListJobsResponseObject, error) {
	p := req.Params
	f := store.ListFilter{Limit: 20}
	if p.Limit != nil {
		f.Limit = *p.Limit
	}
	if p.Status != nil {
		st := job.Status(*p.Status)
		f.Status = &st
	}
	if p.Type != nil {
		t := job.Type(*p.Type)
		f.Type = &t
	}
	if p.UserId != nil {
		f.UserID = *p.UserId
	}
	var err error
	if f.CreatedAfter, err = queryTime("createdAfter", p.CreatedAfter); err != nil {
		return nil, err
	}
	if f.CreatedBefore, err = queryTime("createdBefore", p.CreatedBefore); err != nil {
		return nil, err
	}
	if p.Cursor != nil {
		c, err := store.ParseCursor(*p.Cursor)
		if err != nil {
			return nil, errBadCursor
		}
		f.After = &c
	}
	jobs, next, err := s.store.List(ctx, store.Operator(principalFrom(ctx).Subject), f)
	if err != nil {
		return nil, err
	}
	out := gen.AdminJobList{Jobs: make([]gen.AdminJob, 0, len(jobs))}
	for i := range jobs {
		out.Jobs = append(out.Jobs, toAdminJob(&jobs[i]))
	}
	if next != nil {
		c := next.String()
		out.NextCursor = &c
	}
	return server.AdminListJobs200JSONResponse(out), nil
}

// AdminGetJob answers any user's job.
func (s *Server) AdminGetJob(ctx context.Context, req server.AdminGetJobRequestObject) (server.AdminGetJobResponseObject, error) {
	j, err := s.store.Get(ctx, store.Operator(principalFrom(ctx).Subject), req.Id)
	if err != nil {
		return nil, err
	}
	return server.AdminGetJob200JSONResponse(toAdminJob(j)), nil
}

// AdminGetJobAttempts answers the job's attempt log.
func (s *Server) AdminGetJobAttempts(ctx context.Context, req server.AdminGetJobAttemptsRequestObject) (server.AdminGetJobAttemptsResponseObject, error) {
	attempts, err := s.store.Attempts(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	out := gen.AttemptList{Attempts: make([]gen.Attempt, 0, len(attempts))}
	for _, a := range attempts {
		out.Attempts = append(out.Attempts, gen.Attempt{
			Attempt: a.Attempt, WorkerId: a.WorkerID, Outcome: gen.AttemptOutcome(a.Outcome), Error: a.Error,
			StartedAt: timestampPtr(a.StartedAt), EndedAt: timestampPtr(a.EndedAt),
		})
	}
	return server.AdminGetJobAttempts200JSONResponse(out), nil
}

// AdminGetJobEvents streams any user's job, as GetJobEvents does its owner's.
func (s *Server) AdminGetJobEvents(ctx context.Context, req server.AdminGetJobEventsRequestObject) (server.AdminGetJobEventsResponseObject, error) {
	read := func(ctx context.Context, _ int64) (polled, error) {
		j, err := s.store.Get(ctx, store.Operator(principalFrom(ctx).Subject), req.Id)
		if err != nil {
			return polled{}, err
		}
		return polledOf(j), nil
	}
	stream, err := s.openStream(ctx, req.Id, req.Params.LastEventID, read)
	if err != nil {
		return nil, err
	}
	if stream == nil {
		return server.AdminGetJobEvents204Response{}, nil
	}
	return stream, nil
}

// AdminCancelJob cancels any user's job and logs who did.
func (s *Server) AdminCancelJob(ctx context.Context, req server.AdminCancelJobRequestObject) (server.AdminCancelJobResponseObject, error) {
	admin := store.Operator(principalFrom(ctx).Subject)
	_, res, err := s.store.Cancel(ctx, admin, req.Id)
	if err != nil {
		return nil, err
	}
	if res == store.AlreadyFinished {
		return nil, errAlreadyFinished
	}
	s.metrics.JobCancelled()
	s.log.Info("admin action", "action", "cancel", "admin", principalFrom(ctx).Subject, "job_id", req.Id)
	// Read again for the operator's fields (who cancelled it, the worker).
	j, err := s.store.Get(ctx, admin, req.Id)
	if err != nil {
		return nil, err
	}
	return server.AdminCancelJob200JSONResponse(toAdminJob(j)), nil
}

// AdminRequeueJob runs a FAILED job again as a new job.
func (s *Server) AdminRequeueJob(ctx context.Context, req server.AdminRequeueJobRequestObject) (server.AdminRequeueJobResponseObject, error) {
	admin := principalFrom(ctx).Subject
	j, err := s.store.Requeue(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	s.metrics.JobCreated(string(j.Type))
	s.log.Info("admin action", "action", "requeue", "admin", admin, "job_id", req.Id, "new_job_id", j.ID)
	loc := adminPrefix + "jobs/" + j.ID.String()
	return server.AdminRequeueJob202JSONResponse{Body: toAdminJob(j), Headers: server.AdminRequeueJob202ResponseHeaders{Location: &loc}}, nil
}

// AdminRequeueFailed requeues FAILED jobs by filter (or counts them).
func (s *Server) AdminRequeueFailed(ctx context.Context, req server.AdminRequeueFailedRequestObject) (server.AdminRequeueFailedResponseObject, error) {
	b := req.Body
	f := store.RequeueFilter{FailedAfter: b.FailedAfter.Time, Limit: 100}
	if b.FailedBefore != nil {
		f.FailedBefore = &b.FailedBefore.Time
	}
	if b.Type != nil {
		t := job.Type(*b.Type)
		f.Type = &t
	}
	if b.UserId != nil {
		f.UserID = *b.UserId
	}
	if b.ErrorContains != nil {
		f.ErrorContains = *b.ErrorContains
	}
	if b.Limit != nil {
		f.Limit = *b.Limit
	}
	f.DryRun = b.DryRun != nil && *b.DryRun
	matched, jobs, err := s.store.RequeueFailed(ctx, f)
	if err != nil {
		return nil, err
	}
	admin := principalFrom(ctx).Subject
	out := gen.RequeueResult{Matched: matched, Requeued: make([]gen.AdminJob, 0, len(jobs))}
	for i := range jobs {
		out.Requeued = append(out.Requeued, toAdminJob(&jobs[i]))
		s.metrics.JobCreated(string(jobs[i].Type))
		s.log.Info("admin action", "action", "requeue", "admin", admin,
			"job_id", *jobs[i].RequeuedFrom, "new_job_id", jobs[i].ID)
	}
	s.log.Info("admin action", "action", "requeue-by-filter", "admin", admin, "dry_run", f.DryRun,
		"matched", matched, "requeued", len(jobs))
	return server.AdminRequeueFailed200JSONResponse(out), nil
}

// AdminGetStats answers the queue at a glance, computed at most every
// statsTTL per process: a console refreshes it every few seconds.
func (s *Server) AdminGetStats(ctx context.Context, _ server.AdminGetStatsRequestObject) (server.AdminGetStatsResponseObject, error) {
	st, err := s.stats.get(ctx, s.computeStats)
	if err != nil {
		return nil, err
	}
	return server.AdminGetStats200JSONResponse(st), nil
}

func (s *Server) computeStats(ctx context.Context) (gen.AdminStats, error) {
	q, err := s.store.QueueStats(ctx)
	if err != nil {
		return gen.AdminStats{}, err
	}
	act, err := s.store.RecentActivity(ctx)
	if err != nil {
		return gen.AdminStats{}, err
	}
	workers, err := s.store.Processes(ctx, store.KindWorker)
	if err != nil {
		return gen.AdminStats{}, err
	}
	out := gen.AdminStats{QueuedCapped: q.Capped, Queued: []gen.TypeCount{}, FinishedLastHour: []gen.TypeCount{},
		PerMinute: make([]gen.MinuteCount, 0, len(act.PerMinute)), Workers: toAPIWorkers(workers)}
	for _, st := range []job.Status{job.StatusPending, job.StatusProcessing} {
		for _, t := range job.Types {
			if n := q.Counts[st][t]; n > 0 {
				out.Queued = append(out.Queued, gen.TypeCount{Type: gen.JobType(t), Status: gen.JobStatus(st), Count: int(n)})
			}
		}
	}
	for _, c := range act.FinishedLastHour {
		out.FinishedLastHour = append(out.FinishedLastHour, gen.TypeCount{Type: gen.JobType(c.Type), Status: gen.JobStatus(c.Status), Count: int(c.Count)})
	}
	for _, m := range act.PerMinute {
		out.PerMinute = append(out.PerMinute, gen.MinuteCount{Minute: timestamp.New(m.Minute), Completed: int(m.Completed), Failed: int(m.Failed)})
	}
	if q.OldestPendingAge > 0 {
		age := q.OldestPendingAge.Seconds()
		out.OldestPendingSeconds = &age
	}
	return out, nil
}

// AdminListWorkers answers the live workers.
func (s *Server) AdminListWorkers(ctx context.Context, _ server.AdminListWorkersRequestObject) (server.AdminListWorkersResponseObject, error) {
	workers, err := s.store.Processes(ctx, store.KindWorker)
	if err != nil {
		return nil, err
	}
	return server.AdminListWorkers200JSONResponse(gen.WorkerList{Workers: toAPIWorkers(workers)}), nil
}

func toAdminJob(j *job.Job) gen.AdminJob {
	return gen.AdminJob{Job: toAPIJob(j), UserId: j.UserID, WorkerId: j.WorkerID,
		CancelledBy: j.CancelledBy, RequeuedFrom: j.RequeuedFrom, RequeuedAs: j.RequeuedAs}
}

func toAPIWorkers(ws []store.Process) []gen.Worker {
	out := make([]gen.Worker, 0, len(ws))
	for _, w := range ws {
		out = append(out, gen.Worker{Id: w.ID, Host: w.Host, Pid: w.PID, Version: w.Version,
			Concurrency: w.Concurrency, InFlight: w.InFlight,
			StartedAt: timestamp.New(w.StartedAt), LastSeenAt: timestamp.New(w.LastSeenAt)})
	}
	return out
}

func timestampPtr(t *time.Time) *timestamp.Time {
	if t == nil {
		return nil
	}
	return timestamp.Ptr(*t)
}

// statsTTL is how long one process reuses the stats it computed.
const statsTTL = 2 * time.Second

// statsCache holds the last stats; concurrent callers of an expired entry
// wait for one computation.
type statsCache struct {
	mu    sync.Mutex
	at    time.Time
	stats gen.AdminStats
}

func (c *statsCache) get(ctx context.Context, compute func(context.Context) (gen.AdminStats, error)) (gen.AdminStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < statsTTL {
		return c.stats, nil
	}
	st, err := compute(ctx)
	if err != nil {
		return gen.AdminStats{}, err
	}
	c.stats, c.at = st, time.Now()
	return st, nil
}

// queryTime parses a TimestampText query parameter (nil when absent); the
// validator has checked its form, not that it is a real date.
func queryTime(name string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	var t timestamp.Time
	if err := t.UnmarshalText([]byte(*s)); err != nil {
		return nil, errorf(http.StatusBadRequest, `Invalid query parameter "`+name+`": not a date and time`)
	}
	return &t.Time, nil
}

// errBadCursor is the 400 of a cursor this server did not make.
var errBadCursor = errorf(http.StatusBadRequest, `Invalid query parameter "cursor": not a cursor this server made`)
