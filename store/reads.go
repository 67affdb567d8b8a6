package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/jobsd/jobsd/job"
	"go.opentelemetry.io/otel/trace"
)

// getJobsSQL reads a batch of status polls in one statement, and getJobSQL a
// batch of one (no array to encode and decode). The owner is checked in Go,
// per poll, so that another user's job stays a 404.
const (
	getJobsSQL = `SELECT ` + jobColumns + ` FROM jobs WHERE id = ANY($1::uuid[])`
	getJobSQL  = `SELECT ` + jobColumns + ` FROM jobs WHERE id = $1`
)

// maxReadBatch bounds the ids of one batched read, and so its reply.
const maxReadBatch = 256

// A pendingRead is one Get waiting for its batch.
type pendingRead struct {
	user string
	id   uuid.UUID
	// deadline is the store's statement timeout counted from the Get's
	// call: time queued behind a stuck read counts against it (getMany).
	deadline time.Time
	// caller is the span of the request that asked, which the batch's
	// span links to (zero while tracing is off).
	caller trace.SpanContext
	job    *job.Job
	err    error
	// done is closed when the batch has answered; made only for a Get
	// that waits for another's batch (one that reads at once needs none).
	done chan struct{}
}

// readBatcher turns concurrent Gets into few statements. A Get that finds no
// batch in flight reads at once, taking every Get queued so far with it; Gets
// that arrive while a batch is in flight queue up and leave together when it
// ends. Nothing waits for a timer, so a lone poll is one round trip as
// before. Under load a primary-key read costs PostgreSQL (and lib/pq) mostly
// per-statement work (Bind, executor start-up, a round trip), which one
// statement of 20 ids pays once instead of 20 times.
//
// One batch at a time makes the batches largest: a second slot used at once
// halves them (bench/README.md, "Fourth round"). A second batch starts only
// beside one that has run for slowRead, so that a slow or stuck statement
// (a large result, a connection whose server stopped answering) does not
// stop every poll: the next Get, or the rescue timer when none comes, starts
// one on another connection, up to maxSlots.
//
// Every read leaves after the Get that asked for it arrived, so a poll sees
// at least every change committed before it began.
type readBatcher struct {
	p        *readPool
	maxSlots int
	slow     time.Duration // slowRead (tests set another)

	mu      sync.Mutex
	queue   []*pendingRead
	running int       // batches in flight, at most maxSlots
	newest  time.Time // when the newest batch in flight started
	// rescue starts a batch for reads queued behind a slow one when no Get
	// arrives to do it; armed while it is set to.
	rescue      *time.Timer
	rescueArmed bool
}

// slowRead is how long a batch runs before another may start beside it. A
// status read takes well under a millisecond on a local network; a batch
// still in flight after 5 ms is slow or stuck.
const slowRead = 5 * time.Millisecond

// get queues one read and waits for its batch. The batch does not end with
// ctx (the others share it); the wait does.
func (b *readBatcher) get(ctx context.Context, user string, id uuid.UUID) (*job.Job, error) {
	now := time.Now()
	r := &pendingRead{user: user, id: id, deadline: now.Add(b.p.timeout), caller: readLink(ctx)}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	if !b.mayStartLocked(now) {
		r.done = make(chan struct{}) // before another batch can take r
		b.armRescueLocked(now)
		b.mu.Unlock()
		return r.wait(ctx)
	}
	// This Get reads now, on its own goroutine, taking along whatever was
	// queued (behind a slow batch: reads that waited, and so run under
	// their oldest deadline, not the socket's fresh one). A batch takes the
	// oldest reads first: behind more than a batch's worth, this Get's own
	// read (the newest) is left for a later batch, and it waits for that.
	b.startLocked(now)
	batch := b.takeLocked()
	mine := batch[len(batch)-1] == r
	if !mine {
		r.done = make(chan struct{}) // before another batch can take r
	}
	b.mu.Unlock()
	b.read(batch, batch[0] != r)
	b.next()
	if !mine {
		return r.wait(ctx)
	}
	return r.job, r.err
}

// wait waits for the batch that takes r to answer, or for ctx to end.
func (r *pendingRead) wait(ctx context.Context) (*job.Job, error) {
	select {
	case <-r.done:
		return r.job, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("get job: %w", ctx.Err())
	}
}

// mayStartLocked reports whether a new batch may start now: none is in
// flight, or a slot is free and the newest in flight has run for slowRead.
func (b *readBatcher) mayStartLocked(now time.Time) bool {
	return b.running == 0 || b.running < b.maxSlots && now.Sub(b.newest) >= b.slow
}

// startLocked counts a batch starting now.
func (b *readBatcher) startLocked(now time.Time) {
	b.running++
	b.newest = now
}

// armRescueLocked sets the rescue timer to when the newest batch in flight
// turns slow, unless it is set or no slot is free (a slot's batch, when it
// ends, takes the queue: next).
func (b *readBatcher) armRescueLocked(now time.Time) {
	if b.rescueArmed || b.running >= b.maxSlots {
		return
	}
	b.rescueArmed = true
	d := b.slow - now.Sub(b.newest)
	if b.rescue == nil {
		b.rescue = time.AfterFunc(d, b.rescueQueued)
		return
	}
	b.rescue.Reset(d)
}

// rescueQueued starts a batch for the reads queued behind a slow one, or
// sets the timer again if the batch in flight is a newer one, not yet slow.
func (b *readBatcher) rescueQueued() {
	b.mu.Lock()
	b.rescueArmed = false
	if len(b.queue) == 0 {
		b.mu.Unlock()
		return
	}
	now := time.Now()
	if !b.mayStartLocked(now) {
		b.armRescueLocked(now)
		b.mu.Unlock()
		return
	}
	b.startLocked(now)
	batch := b.takeLocked()
	b.mu.Unlock()
	b.read(batch, true)
	b.next()
}

// takeLocked removes up to maxReadBatch reads from the queue.
func (b *readBatcher) takeLocked() []*pendingRead {
	n := min(len(b.queue), maxReadBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	}
	return batch
}

// next hands the slot to the reads queued meanwhile, or frees it.
func (b *readBatcher) next() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	batch := b.takeLocked()
	b.newest = time.Now()
	b.mu.Unlock()
	go func() {
		b.read(batch, true)
		b.next()
	}()
}

// read runs one batch and answers each of its Gets; queued says that they
// waited for a slot (getMany).
func (b *readBatcher) read(batch []*pendingRead, queued bool) {
	span := startBatchSpan(batch)
	jobs, err := b.p.getMany(batch, queued)
	endSpan(span, err)
	byID := jobs.index()
	for _, r := range batch {
		switch j := jobs.find(r.id, byID); {
		case err != nil:
			r.err = err
		case j == nil || j.UserID != r.user:
			r.err = ErrNotFound
		default:
			r.job = j
		}
		if r.done != nil {
			close(r.done)
		}
	}
}

// readPool is a database that status reads go to, the primary or a read
// replica, with its prepared statements and its own batcher. Its reads run on
// connections of their own, bounded at the socket (pollconn.go), opened and
// prepared when first needed: a process that never polls (a worker, a
// function instance) holds none.
type readPool struct {
	db      *sqlx.DB // the database's pool for everything else (a replica's lists and checks)
	polls   *sql.DB  // the status reads' connections (openPollDB)
	timeout time.Duration
	reads   readBatcher
	gets    atomic.Int64
	pooler  bool // nothing prepared (pooler.go)

	prepMu   sync.Mutex
	prepared atomic.Pointer[readStmts] // set once, by prepare
}

// readStmts are a readPool's prepared statements.
type readStmts struct {
	getOne, getMany *sql.Stmt
}

// newReadPool returns the reads of the database at dsn (whose other pool is
// db), batched in up to slots statements at once.
//
// Its connections plan the prepared reads once (plan_cache_mode =
// force_generic_plan): PostgreSQL otherwise plans the batched form afresh on
// every execution, its generic plan (made for an array of unknown length)
// looking dearer than a custom one for the few ids of a batch: 8 custom
// plans of 8 executions with 8 ids each on 100,000 jobs
// (pg_prepared_statements), 54 µs of planning each where the generic plan
// takes 9 (EXPLAIN's Planning Time). The generic plan is the same scan of
// the primary key. Behind a pooler nothing is
// prepared (and a pooler may refuse a setting at start-up), so nothing is set.
func newReadPool(db *sqlx.DB, dsn string, timeout time.Duration, slots int, pooler bool) (*readPool, error) {
	if !pooler {
		var err error
		if dsn, err = withParam(dsn, "plan_cache_mode", "force_generic_plan"); err != nil {
			return nil, err
		}
	}
	polls, err := openPollDB(dsn, timeout, slots)
	if err != nil {
		return nil, err
	}
	p := &readPool{db: db, polls: polls, timeout: timeout, pooler: pooler}
	p.reads = readBatcher{p: p, maxSlots: slots, slow: slowRead}
	return p, nil
}

// prepare makes the pool's statements, once; behind a pooler, none
// (pooler.go). Reads call it when they find none; the replica monitor
// before it first puts a replica in use.
func (p *readPool) prepare(ctx context.Context) error {
	if p.pooler {
		return nil
	}
	p.prepMu.Lock()
	defer p.prepMu.Unlock()
	if p.prepared.Load() != nil {
		return nil
	}
	var st readStmts
	var err error
	if st.getOne, err = p.polls.PrepareContext(ctx, getJobSQL); err != nil {
		return fmt.Errorf("prepare get: %w", classify(err))
	}
	if st.getMany, err = p.polls.PrepareContext(ctx, getJobsSQL); err != nil {
		st.getOne.Close()
		return fmt.Errorf("prepare get: %w", classify(err))
	}
	p.prepared.Store(&st)
	return nil
}

// statements returns the prepared statements, preparing them within the
// timeout if need be; behind a pooler, none (nil statements).
func (p *readPool) statements() (*readStmts, error) {
	if p.pooler {
		return &readStmts{}, nil
	}
	if st := p.prepared.Load(); st != nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := p.prepare(ctx); err != nil {
		return nil, err
	}
	return p.prepared.Load(), nil
}

// close closes the statements and the reads' connections, not db.
func (p *readPool) close() {
	p.reads.mu.Lock()
	if p.reads.rescue != nil {
		p.reads.rescue.Stop()
	}
	p.reads.mu.Unlock()
	if st := p.prepared.Load(); st != nil {
		st.getOne.Close()
		st.getMany.Close()
	}
	p.polls.Close()
}

// getMany reads the batch's jobs in one statement, by id, within the
// timeout of its oldest Get (the first: the queue is in order). A Get that
// found a slot free reads at once, alone, and the socket's deadline, armed
// when the statement is sent, is its bound (pollconn.go): its context has no
// Done channel, so neither database/sql nor lib/pq starts a goroutine to
// watch it. Gets that queued (under load, behind busy slots) may have waited
// most of their timeout already, which the socket's deadline would grant
// them afresh: their batch runs under a context with the oldest Get's
// deadline, whose goroutines the batch's Gets share, and is not sent at all
// once that has passed. Two reads of one job share its row (callers must
// not modify a job.Job).
func (p *readPool) getMany(batch []*pendingRead, queued bool) (jobsByID, error) {
	ctx := context.Background()
	if queued {
		if time.Now().After(batch[0].deadline) {
			return nil, fmt.Errorf("get job: %w", classify(context.DeadlineExceeded))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, batch[0].deadline)
		defer cancel()
	}
	p.gets.Add(1)
	st, err := p.statements()
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	var rows *sql.Rows
	if len(batch) == 1 {
		rows, err = p.query(ctx, st.getOne, getJobSQL, batch[0].id)
	} else {
		rows, err = p.query(ctx, st.getMany, getJobsSQL, uuidArray(batch))
	}
	if err != nil {
		return nil, fmt.Errorf("get job: %w", classify(err))
	}
	defer rows.Close()
	jobs := make(jobsByID, 0, len(batch))
	for rows.Next() {
		j := new(job.Job)
		if err := scanJob(rows, j); err != nil {
			return nil, fmt.Errorf("get job: %w", classify(err))
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get job: %w", classify(err))
	}
	return jobs, nil
}

// jobsByID is a batch's rows, at most one per id.
type jobsByID []*job.Job

// smallBatch is the most rows found by scanning them: for a few rows (a
// lone poll's batch has one) a scan costs less than building a map.
const smallBatch = 8

// index is the rows by id when there are more than smallBatch, else nil.
func (js jobsByID) index() map[uuid.UUID]*job.Job {
	if len(js) <= smallBatch {
		return nil
	}
	m := make(map[uuid.UUID]*job.Job, len(js))
	for _, j := range js {
		m[j.ID] = j
	}
	return m
}

// find returns the row of id, or nil: from m when there is one (index).
func (js jobsByID) find(id uuid.UUID, m map[uuid.UUID]*job.Job) *job.Job {
	if m != nil {
		return m[id]
	}
	for _, j := range js {
		if j.ID == id {
			return j
		}
	}
	return nil
}

// uuidArray is the batch's ids as a PostgreSQL array literal.
func uuidArray(batch []*pendingRead) string {
	var sb strings.Builder
	sb.Grow(2 + len(batch)*37)
	sb.WriteByte('{')
	for i, r := range batch {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(r.id.String())
	}
	sb.WriteByte('}')
	return sb.String()
}
