package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/job"
)

// Read replicas. A user's status polls, long polls, event streams and lists
// may read from PostgreSQL streaming replicas (Options.ReadURLs); writes,
// claims, the operator's reads and everything else use the primary. A read
// falls back to the primary, and so never shows a job older than the caller
// has seen, when
//   - no replica is in use: none is up, or every one is further behind the
//     primary than Options.MaxLag (measured below);
//   - the replica has no such job (it may not have replayed its creation
//     yet: a create followed at once by a poll is never a 404);
//   - the replica's version is older than the caller's (GetFresh: the
//     version an If-None-Match names, or one past the version a long poll
//     or a stream was woken from);
//   - the job changed (this process heard its notification) after the
//     moment every replica in use is known to be fresh as of: a client that
//     polls with the ETag of the version before a change sees the change;
//   - the replica fails, or does not answer within a check's timeout (not
//     the statement timeout: readTimeout): it is then out of use until the
//     monitor hears from it again, so a replica that goes away, or hangs,
//     costs no request.
//
// How far behind a replica is comes from the WAL positions, not from
// pg_last_xact_replay_timestamp, which on an idle primary grows old while
// the replica is in fact current. Every check interval the monitor reads the
// primary's WAL position (pg_current_wal_lsn, the WAL written: every commit
// that can be seen, with synchronous_commit on; with it off, a commit counts
// once the WAL writer has written it, within wal_writer_delay), keeps the
// readings of the last moments, then reads each replica's replay position.
// The newest
// primary reading at or below the replay position says the replica had
// every change made before that reading's time: the replica is fresh as of
// then. A replica is in use while it is up and fresh as of less than MaxLag
// ago; between checks that age grows by itself, so a replica that stops
// answering the monitor drops out after MaxLag at most.

// DefaultMaxLag is how far behind the primary a replica may be and still
// serve reads, unless Options.MaxLag says otherwise.
const DefaultMaxLag = time.Second

// Reasons a replica read falls back to the primary (Store.ReplicaFallbacks).
const (
	FallbackNoReplica = "no_replica" // none up and within MaxLag
	FallbackChanged   = "changed"    // the job changed since the replicas were fresh
	FallbackNotFound  = "not_found"  // the replica has no such job
	FallbackOlder     = "older"      // the replica's version is older than the caller's
	FallbackError     = "error"      // the replica failed (then out of use)
)

// fallbackReasons are the reasons in the order metrics list them.
var fallbackReasons = []string{FallbackNoReplica, FallbackChanged, FallbackNotFound, FallbackOlder, FallbackError}

// replicaSet is the store's read replicas and their monitor.
type replicaSet struct {
	primary  *sqlx.DB
	replicas []*replica
	maxLag   time.Duration
	interval time.Duration
	next     atomic.Uint64 // round robin over the replicas in use

	fallbacks map[string]*atomic.Int64
	lists     atomic.Int64 // user list pages served by a replica

	mu      sync.Mutex
	samples []walSample // the primary's WAL positions, oldest first

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	onChange  func(ReplicaStatus) // Options.ReplicaChanged
}

// walSample is one reading of the primary's WAL position.
type walSample struct {
	lsn int64
	at  time.Time
}

// replica is one read replica.
type replica struct {
	*readPool
	name string // host:port/database, for /readyz and metrics

	up        atomic.Bool
	freshAsOf atomic.Int64 // unix nanoseconds: the replica has every change made before
	caughtUp  atomic.Bool  // it had replayed all the primary had written at the last check
	listed    atomic.Int64 // list pages it served

	mu      sync.Mutex
	problem string // why it is down, for /readyz

	// wasInUse is whether it was in use at the monitor's last check, if
	// checked (the first check reports either).
	wasInUse, checked bool
}

// openReplicas connects to opts.ReadURLs and starts the monitor; nil when
// there are none. A replica that cannot be reached yet is no error: it is
// out of use until it answers.
func openReplicas(ctx context.Context, s *Store, opts Options) (*replicaSet, error) {
	if len(opts.ReadURLs) == 0 {
		return nil, nil
	}
	rs := &replicaSet{primary: s.db, maxLag: opts.MaxLag, stop: make(chan struct{}), done: make(chan struct{}),
		fallbacks: map[string]*atomic.Int64{}, onChange: opts.ReplicaChanged}
	if rs.maxLag <= 0 {
		rs.maxLag = DefaultMaxLag
	}
	rs.interval = checkInterval(rs.maxLag)
	for _, r := range fallbackReasons {
		rs.fallbacks[r] = new(atomic.Int64)
	}
	for _, u := range opts.ReadURLs {
		if opts.Pooler { // replicas behind the same kind of pooler
			var err error
			if u, err = pooledURL(u); err != nil {
				return nil, err
			}
		}
		db, err := openReplica(u)
		if err != nil {
			rs.closePools()
			return nil, err
		}
		db.SetMaxOpenConns(opts.MaxOpenConns)
		db.SetMaxIdleConns(opts.MaxOpenConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		pool, err := newReadPool(db, u, rs.readTimeout(opts.QueryTimeout), opts.ReadBatches, opts.Pooler)
		if err != nil {
			db.Close()
			rs.closePools()
			return nil, err
		}
		r := &replica{readPool: pool, name: replicaName(u)}
		r.setDown("not checked yet")
		rs.replicas = append(rs.replicas, r)
	}
	// The first check, so that a process starts with its replicas in use;
	// bounded as every check is, however the replicas answer.
	checkCtx, cancel := context.WithTimeout(ctx, rs.checkTimeout())
	rs.check(checkCtx)
	cancel()
	go rs.run()
	return rs, nil
}

// openReplica opens the pool of one replica. lib/pq reads a URL only when
// it connects: a malformed one is refused here, at start-up, rather than
// leaving a replica that is never in use.
func openReplica(u string) (*sqlx.DB, error) {
	c, err := pq.NewConnector(u)
	if err != nil {
		return nil, fmt.Errorf("read replica URL %s: %w", replicaName(u), err)
	}
	return sqlx.NewDb(sql.OpenDB(c), "postgres"), nil
}

// closePools closes the pools of the replicas opened so far, when a later
// one cannot be.
func (rs *replicaSet) closePools() {
	for _, r := range rs.replicas {
		r.close()
		r.db.Close()
	}
}

// checkTimeout bounds one check: a replica that does not answer within it
// is down.
func (rs *replicaSet) checkTimeout() time.Duration { return max(rs.interval, time.Second) }

// readTimeout bounds a status read on a replica as a check is bounded (1 s),
// or by the statement timeout if that is shorter. A replica that has not
// answered a primary-key read in that time hangs (a network that stopped
// passing its packets, a stuck server), and the primary answers instead;
// bounded by the statement timeout, every poll sent to a hanging replica
// before the monitor took it out of use waited that long first. Lists keep
// the statement timeout: a page may take longer.
func (rs *replicaSet) readTimeout(statement time.Duration) time.Duration {
	return min(statement, rs.checkTimeout())
}

// checkInterval is how often the monitor reads the WAL positions: a quarter
// of the lag allowed, within 10 ms..1 s.
func checkInterval(maxLag time.Duration) time.Duration {
	return min(max(maxLag/4, 10*time.Millisecond), time.Second)
}

// replicaName is the URL's host, port and database, without user or
// password: how /readyz and metrics name a replica.
func replicaName(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host + u.Path
	}
	// key=value form
	var host, port, db string
	for _, f := range strings.Fields(raw) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		case "dbname":
			db = v
		}
	}
	name := host
	if port != "" {
		name += ":" + port
	}
	return name + "/" + db
}

func (rs *replicaSet) close() {
	if rs == nil {
		return
	}
	rs.closeOnce.Do(func() {
		close(rs.stop)
		<-rs.done // a check ends within checkTimeout
		for _, r := range rs.replicas {
			r.close()
			r.db.Close()
		}
	})
}

// run checks the replicas every interval until close.
func (rs *replicaSet) run() {
	defer close(rs.done)
	t := time.NewTicker(rs.interval)
	defer t.Stop()
	for {
		select {
		case <-rs.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), rs.checkTimeout())
			rs.check(ctx)
			cancel()
		}
	}
}

// check reads the primary's WAL position, then every replica's, and tells
// onChange of each replica that went in or out of use (of each, at the
// first check).
func (rs *replicaSet) check(ctx context.Context) {
	rs.samplePrimary(ctx)
	var wg sync.WaitGroup
	for _, r := range rs.replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.checkReplica(ctx, r)
		}()
	}
	wg.Wait()
	now := time.Now()
	for _, r := range rs.replicas {
		if inUse := r.usable(now, rs.maxLag); !r.checked || inUse != r.wasInUse {
			r.checked, r.wasInUse = true, inUse
			if rs.onChange != nil {
				rs.onChange(r.status(now, rs.maxLag))
			}
		}
	}
}

// samplePrimary records the primary's WAL position. On failure nothing is
// recorded: the replicas' freshness then ages until the primary answers.
func (rs *replicaSet) samplePrimary(ctx context.Context) {
	var lsn int64
	if err := rs.primary.GetContext(ctx, &lsn, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`); err != nil {
		return
	}
	now := time.Now()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.samples = append(rs.samples, walSample{lsn: lsn, at: now})
	// Keep the readings of twice MaxLag: older ones are too old to make a
	// replica usable anyway.
	keep := 0
	for keep < len(rs.samples)-1 && now.Sub(rs.samples[keep].at) > 2*rs.maxLag {
		keep++
	}
	rs.samples = rs.samples[keep:]
}

// freshAsOf is the time of the newest primary reading at or below lsn, and
// whether it is the newest reading of all (the replica is caught up).
func (rs *replicaSet) freshAsOf(lsn int64) (at time.Time, caughtUp, ok bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i := len(rs.samples) - 1; i >= 0; i-- {
		if rs.samples[i].lsn <= lsn {
			return rs.samples[i].at, i == len(rs.samples)-1, true
		}
	}
	return time.Time{}, false, false
}

// checkReplica reads the replica's replay position and updates its state.
func (rs *replicaSet) checkReplica(ctx context.Context, r *replica) {
	var st struct {
		InRecovery bool  `db:"in_recovery"`
		Replayed   int64 `db:"replayed"`
	}
	err := r.db.GetContext(ctx, &st, `SELECT pg_is_in_recovery() AS in_recovery,
		COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0) AS replayed`)
	switch {
	case err != nil:
		r.setDown("unreachable")
		return
	case !st.InRecovery:
		r.setDown("not a standby (not in recovery)")
		return
	}
	// The statements are prepared once the replica first answers (it may
	// not at start-up), before it is first in use, which also tells that
	// it is migrated; database/sql prepares them again on each new
	// connection by itself.
	if err := r.prepare(ctx); err != nil {
		r.setDown("cannot prepare its statements (not migrated?)")
		return
	}
	at, caughtUp, ok := rs.freshAsOf(st.Replayed)
	if ok && at.UnixNano() > r.freshAsOf.Load() {
		r.freshAsOf.Store(at.UnixNano())
	}
	r.caughtUp.Store(ok && caughtUp)
	r.setUp()
}

func (r *replica) setDown(why string) {
	r.mu.Lock()
	r.problem = why
	r.mu.Unlock()
	r.up.Store(false)
}

func (r *replica) setUp() {
	r.mu.Lock()
	r.problem = ""
	r.mu.Unlock()
	r.up.Store(true)
}

// usable reports whether the replica may serve a read now: up, and fresh as
// of less than maxLag ago.
func (r *replica) usable(now time.Time, maxLag time.Duration) bool {
	return r.up.Load() && now.UnixNano()-r.freshAsOf.Load() <= int64(maxLag)
}

// pick returns a replica in use, round robin, or nil.
func (rs *replicaSet) pick() *replica { return rs.pickFresh(time.Time{}) }

// pickFresh returns a replica in use that was fresh as of changedAt (any
// in use when it is zero), round robin, or nil.
func (rs *replicaSet) pickFresh(changedAt time.Time) *replica {
	if rs == nil {
		return nil
	}
	now := time.Now()
	n := uint64(len(rs.replicas))
	start := rs.next.Add(1)
	inUse := false
	for i := range n {
		r := rs.replicas[(start+i)%n]
		if !r.usable(now, rs.maxLag) {
			continue
		}
		if changedAt.IsZero() || r.freshAsOf.Load() >= changedAt.UnixNano() {
			return r
		}
		inUse = true
	}
	if inUse {
		rs.fallbacks[FallbackChanged].Add(1)
	} else {
		rs.fallbacks[FallbackNoReplica].Add(1)
	}
	return nil
}

// failed takes r out of use after a failed read, until the monitor hears
// from it again, and counts the fallback.
func (rs *replicaSet) failed(r *replica) {
	r.setDown("a read failed")
	rs.fallbacks[FallbackError].Add(1)
}

// Fresh is what a read from a replica must reflect, else it goes to the
// primary.
type Fresh struct {
	// Version is the newest version of the job the caller has seen (the
	// If-None-Match of a poll), or one past it when it waits for a change
	// (a long poll or a stream woken by one).
	Version int64
	// ChangedAt is when this process last heard the job changed (the hub's
	// notification), zero if not lately: only a replica fresh as of then
	// has the change.
	ChangedAt time.Time
}

// GetFresh returns the user's job as Get does, from a read replica when one
// is in use, was fresh when the job last changed (f.ChangedAt) and has the
// job at f.Version or newer; else from the primary. So a poll never answers
// with a version older than one its caller has seen, nor one this process
// knows to be out of date. Without replicas, and for an operator, it is Get.
func (s *Store) GetFresh(ctx context.Context, sc Scope, id uuid.UUID, f Fresh) (*job.Job, error) {
	if sc.anyOwner {
		return s.Get(ctx, sc, id)
	}
	rs := s.replicas
	if r := rs.pickFresh(f.ChangedAt); r != nil {
		j, err := r.reads.get(ctx, sc.owner, id)
		switch {
		case err == nil && j.Version >= f.Version:
			return j, nil
		case err == nil:
			rs.fallbacks[FallbackOlder].Add(1)
		case errors.Is(err, ErrNotFound):
			rs.fallbacks[FallbackNotFound].Add(1)
		case ctx.Err() != nil:
			return nil, err
		default:
			rs.failed(r)
		}
	}
	return s.primary.reads.get(ctx, sc.owner, id)
}

// ReplicaStatus is one read replica as the store sees it.
type ReplicaStatus struct {
	Name string
	// InUse: up and within MaxLag, so reads go to it.
	InUse bool
	// Up: it answered the last check (or read) as a standby.
	Up bool
	// Lag is how far behind the primary it is: 0 when it had replayed all
	// the primary had written at the last check, else the time since the
	// newest moment it is known to have every change of; -1 before it was
	// first measured.
	Lag time.Duration
	// Problem says why it is down, in a few words that name no address,
	// user or server message (/readyz shows it to anyone).
	Problem string
	// Gets counts the statements status reads sent to it, Lists the list
	// pages it served.
	Gets, Lists int64
}

// Replicas describes the read replicas (none without ReadURLs).
func (s *Store) Replicas() []ReplicaStatus {
	rs := s.replicas
	if rs == nil {
		return nil
	}
	now := time.Now()
	out := make([]ReplicaStatus, 0, len(rs.replicas))
	for _, r := range rs.replicas {
		out = append(out, r.status(now, rs.maxLag))
	}
	return out
}

// status is the replica as ReplicaStatus describes it, at now.
func (r *replica) status(now time.Time, maxLag time.Duration) ReplicaStatus {
	r.mu.Lock()
	problem := r.problem
	r.mu.Unlock()
	lag := time.Duration(-1)
	if fresh := r.freshAsOf.Load(); r.caughtUp.Load() {
		lag = 0
	} else if fresh != 0 {
		lag = now.Sub(time.Unix(0, fresh))
	}
	return ReplicaStatus{Name: r.name, InUse: r.usable(now, maxLag), Up: r.up.Load(),
		Lag: lag, Problem: problem, Gets: r.gets.Load(), Lists: r.listed.Load()}
}

// ReplicaFallbacks counts the reads that went to the primary instead of a
// replica, by reason (the Fallback constants); nil without replicas.
func (s *Store) ReplicaFallbacks() map[string]int64 {
	rs := s.replicas
	if rs == nil {
		return nil
	}
	out := make(map[string]int64, len(rs.fallbacks))
	for k, v := range rs.fallbacks {
		out[k] = v.Load()
	}
	return out
}

// FallbackReasons lists the reasons of ReplicaFallbacks.
func FallbackReasons() []string { return append([]string(nil), fallbackReasons...) }
