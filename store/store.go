// Package store keeps jobs in PostgreSQL. The API (impl) and the worker share
// it: the jobs table is the resource clients poll; job_queue, a narrow
// table with one row per job waiting to run, is the worker's queue, and
// job_leases holds one row per claim under way (migrations 00012 and 00013;
// queue.go).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the postgres driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/migrations"
)

// Sentinel errors; callers test them with errors.Is.
var (
	// ErrNotFound: no such job for this user. A job of another user is not
	// found either, so nothing tells whether an id exists.
	ErrNotFound = errors.New("job not found")
	// ErrIdempotencyConflict: the Idempotency-Key was used with another body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
	// ErrUnavailable: the database cannot be reached or is shutting down.
	ErrUnavailable = errors.New("database unavailable")
	// ErrNotMigrated: the schema is missing or older than this binary.
	ErrNotMigrated = errors.New("database is not migrated")
)

// Options tune a Store.
type Options struct {
	// MaxOpenConns bounds the pool; 0 means 20.
	MaxOpenConns int
	// QueryTimeout bounds every statement; 0 means 5 s.
	QueryTimeout time.Duration
	// ReadBatches bounds the batched status reads in flight at once (each
	// holds a connection while it runs); 0 means 2.
	ReadBatches int
	// ListMaxBytes bounds the results of one List page; 0 means
	// DefaultListMaxBytes. The API documents the default, so only tests
	// set it.
	ListMaxBytes int
	// ReadURLs are PostgreSQL streaming replicas of the primary that a
	// user's polls and lists may read from (replicas.go); each gets a pool
	// of MaxOpenConns and ReadBatches of its own.
	ReadURLs []string
	// MaxLag is how far behind the primary a replica may be and still
	// serve reads; 0 means DefaultMaxLag.
	MaxLag time.Duration
	// ReplicaChanged, if set, hears of each replica that goes in or out of
	// use (as the monitor sees it, every check), for the log.
	ReplicaChanged func(ReplicaStatus)
	// Outbox makes Create write an outbox row for each new job, in the
	// same statement (JOBS_DISPATCH=sqs; see outbox.go).
	Outbox bool
	// Pooler says that url reaches PostgreSQL through a pooler in
	// transaction mode (PgBouncer's pool_mode=transaction, RDS Proxy),
	// which may run each transaction on another server connection: the
	// store then relies on no session state (pooler.go).
	Pooler bool
}

// Store is the jobs table behind a connection pool.
type Store struct {
	db      *sqlx.DB
	timeout time.Duration
	// primary serves the status reads that must see every committed
	// change; replicas (replicas.go) the others, when there are any.
	primary  *readPool
	replicas *replicaSet
	// listMaxBytes is Options.ListMaxBytes.
	listMaxBytes int
	outbox       outbox
	// pooler is Options.Pooler: nothing is prepared.
	pooler bool
	// stmts are the worker's prepared statements (prepared.go).
	stmts preparedStmts
	// ping is the Ping in flight, if any.
	pingMu sync.Mutex
	ping   *pingCall
}

// Gets counts the statements that status reads (Get) sent to the database:
// each is one prepared-statement execution, one round trip, for one or more
// Gets. Tests and benchmarks use it to count what a poll costs.
func (s *Store) Gets() int64 { return s.primary.gets.Load() }

// Open connects to url and checks that the schema is current; the status
// reads prepare their statements (unless opts.Pooler) when first needed.
// It fails with ErrNotMigrated on an unmigrated database.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.Pooler {
		var err error
		if url, err = pooledURL(url); err != nil {
			return nil, err
		}
	}
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = job.DefaultDBConns
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 5 * time.Second
	}
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	db.SetConnMaxIdleTime(5 * time.Minute)

	if opts.ReadBatches <= 0 {
		opts.ReadBatches = 2
	}
	if opts.ListMaxBytes <= 0 {
		opts.ListMaxBytes = DefaultListMaxBytes
	}
	s := &Store{db: db, timeout: opts.QueryTimeout, listMaxBytes: opts.ListMaxBytes, outbox: newOutbox(opts.Outbox), pooler: opts.Pooler}
	if s.primary, err = newReadPool(db, url, opts.QueryTimeout, opts.ReadBatches, opts.Pooler); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.open(ctx); err != nil {
		s.primary.close()
		db.Close()
		return nil, err
	}
	replicas, err := openReplicas(ctx, s, opts)
	if err != nil {
		s.primary.close()
		db.Close()
		return nil, err
	}
	s.replicas = replicas
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to database: %w", classify(err))
	}
	pending, err := hasPending(ctx, s.db.DB)
	if err != nil {
		return err
	}
	if pending {
		return fmt.Errorf("%w: run `jobsd migrate up` first", ErrNotMigrated)
	}
	return nil // the status reads prepare their statements when first needed
}

// DB returns the underlying pool, for the worker's queue statements and tests.
func (s *Store) DB() *sqlx.DB { return s.db }

// StatusReadsDB returns the status reads' own pool on the primary
// (pollconn.go), for its statistics: at most Options.ReadBatches
// connections beside DB's Options.MaxOpenConns, opened only by reads.
func (s *Store) StatusReadsDB() *sql.DB { return s.primary.polls }

// Close closes the pool.
func (s *Store) Close() error {
	s.replicas.close()
	s.primary.close()
	return s.db.Close()
}

// Ping checks that the database answers, within ctx and the store's
// timeout. It returns when they end even if the driver has not: lib/pq's
// cancel request does not reach a statement that a pooler holds in its
// queue while it has no server connection to give (PgBouncer answers it
// only at its query_wait_timeout), and readiness checks must answer in
// time. Concurrent Pings share one round trip, so checks that time out
// during an outage do not pile up connections.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.pingMu.Lock()
	p := s.ping
	if p == nil {
		p = &pingCall{done: make(chan struct{})}
		s.ping = p
		go s.runPing(p)
	}
	s.pingMu.Unlock()
	select {
	case <-p.done:
		return classify(p.err)
	case <-ctx.Done():
		return classify(fmt.Errorf("ping: %w", ctx.Err()))
	}
}

// pingCall is a Ping's round trip, shared by the Pings that arrive while it
// is in flight.
type pingCall struct {
	done chan struct{}
	err  error
}

func (s *Store) runPing(p *pingCall) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	p.err = s.db.PingContext(ctx)
	cancel()
	s.pingMu.Lock()
	s.ping = nil
	s.pingMu.Unlock()
	close(p.done)
}

// migrationLockID is the session-level advisory lock that serialises
// `jobsd migrate` across processes: goose's default id is shared by every
// goose user of a database, this one only by jobsd.
const migrationLockID int64 = 0x6a6f62736d696772 // "jobsmigr"

// migrationLockWait is how long a migration waits for another process's to
// finish (polled every second): building an index concurrently on a large
// table takes minutes.
const migrationLockWait = 15 * time.Minute

// newProvider loads the migrations. Up and Down hold a session-level
// advisory lock (goose's session locker) while they run, so replicas that
// all run `jobsd migrate up` at start-up apply each migration once: the
// first takes the lock and migrates, the others wait for it and then find
// nothing pending. job.Status waits for the lock too; HasPending (Open's
// check) takes none.
func newProvider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, uint64(migrationLockWait/time.Second)))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

func hasPending(ctx context.Context, db *sql.DB) (bool, error) {
	p, err := newProvider(db)
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("check migrations: %w", classify(err))
	}
	return pending, nil
}

// MigrateUp applies every pending migration.
func MigrateUp(ctx context.Context, db *sql.DB) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// MigrateDown rolls back the newest migration.
func MigrateDown(ctx context.Context, db *sql.DB) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Down(ctx); err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// MigrationStatus lists each migration and whether it is applied.
func MigrationStatus(ctx context.Context, db *sql.DB) ([]string, error) {
	p, err := newProvider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	lines := make([]string, 0, len(st))
	for _, m := range st {
		lines = append(lines, fmt.Sprintf("%-8s %s", m.State, m.Source.Path))
	}
	return lines, nil
}
