package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/job"
)

// jobColumns are the columns of job.Job, in the order of its fields and of
// scanJob. Every statement that returns a job.Job selects exactly these.
const jobColumns = `id, user_id, type, status, result, error, attempts, max_attempts,
	created_at, started_at, completed_at, updated_at, version`

// scanJob scans one row of jobColumns, then extra, into j. Scanned by hand:
// the poll is the hottest statement, and sqlx's reflection was a seventh of
// its CPU.
func scanJob(rows *sql.Rows, j *job.Job, extra ...any) error {
	dest := append([]any{&j.ID, &j.UserID, &j.Type, &j.Status, &j.Result, &j.Error, &j.Attempts,
		&j.MaxAttempts, &j.CreatedAt, &j.StartedAt, &j.CompletedAt, &j.UpdatedAt, &j.Version}, extra...)
	return rows.Scan(dest...)
}

// Get returns the job with that id in the scope, or ErrNotFound: a missing
// job and another user's job are the same answer. A user's Gets (the polls)
// share statements when they arrive together (see readBatcher); the job.Job
// returned must not be modified.
func (s *Store) Get(ctx context.Context, sc Scope, id uuid.UUID) (*job.Job, error) {
	if !sc.anyOwner {
		return s.primary.reads.get(ctx, sc.owner, id)
	}
	jobs, err := s.jobsByID(ctx, []uuid.UUID{id})
	if err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, ErrNotFound
	}
	return &jobs[0], nil
}

// NewJob is what creating a job needs.
type NewJob struct {
	UserID      string
	Type        job.Type
	Input       []byte // a JSON object
	MaxAttempts int    // 0 means 3
	// Idempotency: when Key is set, a second Create with the same user, Scope
	// and Key returns the first job (same RequestHash) or ErrIdempotencyConflict.
	IdempotencyScope string
	IdempotencyKey   string
	RequestHash      []byte
}

// Create inserts a PENDING job. With an idempotency key already used by this
// user in this scope it inserts nothing and returns the existing job with
// replayed true, or ErrIdempotencyConflict when the request differs. The
// unique index decides races: two concurrent requests with one key make one job.
func (s *Store) Create(ctx context.Context, nj NewJob) (created *job.Job, replayed bool, err error) {
	parent := traceParent(ctx) // the request's span, not the store's below
	ctx, span := startSpan(ctx, spanCreate, "INSERT", 0)
	defer func() {
		if created != nil {
			withJobID(span, created.ID.String())
		}
		endSpan(span, err)
	}()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if nj.MaxAttempts <= 0 {
		nj.MaxAttempts = job.DefaultMaxAttempts
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("new job id: %w", err)
	}
	var scope, key any
	if nj.IdempotencyKey != "" {
		scope, key = nj.IdempotencyScope, nj.IdempotencyKey
	}
	// At most twice: a key found bound to a job older than
	// IdempotencyWindow is released, and the insert tried once more.
	for try := 0; ; try++ {
		var j job.Job
		err = s.db.GetContext(ctx, &j, s.outbox.around(`
			INSERT INTO jobs (id, user_id, type, input, max_attempts, idempotency_scope, idempotency_key, request_hash, trace_context)
			VALUES ($1, $2, $3, CAST($4 AS jsonb), $5, $6, $7, $8, $9)
			ON CONFLICT (user_id, idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING `+jobColumns),
			id, nj.UserID, string(nj.Type), string(nj.Input), nj.MaxAttempts, scope, key, nj.RequestHash, parent)
		if err == nil || insertCommitted(err) {
			if err != nil {
				got, err := s.jobsByID(ctx, []uuid.UUID{id})
				if err != nil || len(got) != 1 {
					return nil, false, fmt.Errorf("create job: read back the job whose insert committed: %w", classify(cmp.Or(err, ErrUnavailable)))
				}
				j = got[0]
			}
			s.outbox.written()
			return &j, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, false, fmt.Errorf("create job: %w", classify(err))
		}
		// The key is taken: the insert waited for the other transaction to commit.
		var row struct {
			job.Job
			RequestHash []byte `db:"request_hash"`
			Stale       bool   `db:"stale"`
		}
		err = s.db.GetContext(ctx, &row, `SELECT `+jobColumns+`, request_hash,
				created_at < now() - make_interval(secs => $4) AS stale
			FROM jobs WHERE user_id = $1 AND idempotency_scope = $2 AND idempotency_key = $3`,
			nj.UserID, nj.IdempotencyScope, nj.IdempotencyKey, IdempotencyWindow.Seconds())
		if errors.Is(err, sql.ErrNoRows) && try == 0 {
			continue // released by another request meanwhile
		}
		if err != nil {
			return nil, false, fmt.Errorf("find idempotent job: %w", classify(err))
		}
		if row.Stale && try == 0 {
			// A unique index cannot expire: release the key from the old job
			// (only if it is still the old one's) and insert again.
			if _, err := s.db.ExecContext(ctx, `UPDATE jobs SET idempotency_scope = NULL, idempotency_key = NULL, request_hash = NULL
				WHERE id = $1 AND created_at < now() - make_interval(secs => $2)`, row.ID, IdempotencyWindow.Seconds()); err != nil {
				return nil, false, fmt.Errorf("release idempotency key: %w", classify(err))
			}
			continue
		}
		if !bytes.Equal(row.RequestHash, nj.RequestHash) {
			return nil, false, ErrIdempotencyConflict
		}
		return &row.Job, true, nil
	}
}

// insertCommitted reports whether err is a unique violation of the jobs
// table's primary key, on an insert of Create: the id is Create's own (a
// fresh UUIDv7), so the row holding it is this Create's, whose insert
// committed though its answer was lost. database/sql runs a statement
// again on another connection when the first fails with
// driver.ErrBadConn, which lib/pq reports for a FATAL error as well, and
// PgBouncer sends one when its server connection breaks mid-statement (as
// in the fault suite's database cut behind it).
func insertCommitted(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "23505" && pqErr.Constraint == "jobs_pkey"
}

// IdempotencyWindow is how long an Idempotency-Key stays bound to the job
// it created: a request with the same key after that creates a new job.
const IdempotencyWindow = 24 * time.Hour

// Cursor is a position in a user's list, newest first.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// ErrBadCursor means the cursor text was not made by Cursor.String.
var ErrBadCursor = errors.New("invalid cursor")

// String encodes the cursor as opaque URL-safe text.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes what Cursor.String made.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	if !ok || len(id) != 36 {
		return Cursor{}, ErrBadCursor
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || us < 0 {
		return Cursor{}, ErrBadCursor
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: u}, nil
}

// ListFilter selects a page of jobs.
type ListFilter struct {
	Status *job.Status
	Type   *job.Type
	After  *Cursor // the last job of the previous page
	Limit  int
	// In an operator's scope only (a user's list ignores them):
	UserID                      string // "" for every user
	CreatedAfter, CreatedBefore *time.Time
}

// DefaultListMaxBytes bounds the results of one list page: 16 MiB, so one
// list request holds at most that much of them however large they are (a
// page of 100 jobs with 4 MiB results would be 400 MiB). The API documents
// it in openapi.yaml (listJobs). Options.ListMaxBytes changes it, for tests.
const DefaultListMaxBytes = 16 << 20

// listSQL reads a page in one statement and leaves out, before reading them,
// the jobs whose results would take the page past $2 bytes: the window sums
// result_bytes, the size the worker wrote, kept in the row, so the results of
// jobs left out are never read (EXPLAIN (ANALYZE, BUFFERS) touches no TOAST
// block). Jobs completed before result_bytes existed fall back to
// pg_column_size, the stored size (for a large result, read from its TOAST
// pointer without fetching it), which is smaller than the text of a
// compressed result; List checks what it scans against the bound as well. The first job always stays, so
// paging always progresses. total is the size of the page before the cut (up
// to $1+1 jobs): more jobs follow the last one returned exactly when it
// exceeds the jobs returned.
var listSQL = pageSQL(jobColumns, jobColumns, `j.user_id = $3
	  AND ($4::text IS NULL OR j.status = $4)
	  AND ($5::text IS NULL OR j.type = $5)
	  AND ($6::timestamptz IS NULL OR (j.created_at, j.id) < ($6, $7::uuid))`,
	"created_at DESC, id DESC")

// pageSQL is the statement of a list page: the rows of jobs j (read as
// selectExprs, named columns) that match where, in order, at most $1 of
// them, cut before the job whose result would take the page past $2 bytes
// (the first job always stays); each row ends with total, the size of the
// page before the cut.
func pageSQL(selectExprs, columns, where, order string) string {
	return `SELECT ` + columns + `, total FROM (
		SELECT page.*,
			row_number() OVER w AS n,
			sum(COALESCE(result_bytes, pg_column_size(result), 0)) OVER w AS bytes,
			count(*) OVER () AS total
		FROM (
			SELECT ` + selectExprs + `, j.result_bytes FROM jobs j
			WHERE ` + where + `
			ORDER BY ` + order + `
			LIMIT $1 + 1
		) AS page
		WINDOW w AS (ORDER BY ` + order + ` ROWS UNBOUNDED PRECEDING)
	) AS sized
	WHERE n <= $1 AND (n = 1 OR bytes <= $2)
	ORDER BY n`
}

// List returns up to f.Limit jobs of the scope, newest first, and the cursor
// of the next page (nil on the last page): a user's by creation time, an
// operator's by id (job ids are time-ordered, so the primary key serves the
// order across users). A page ends early, with a cursor, before a job whose
// result would take the page's results past the store's ListMaxBytes; its
// first job is always there, however large.
func (s *Store) List(ctx context.Context, sc Scope, f ListFilter) (_ []job.Job, _ *Cursor, err error) {
	ctx, span := startSpan(ctx, spanList, "SELECT", 0)
	defer func() { endSpan(span, err) }()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var status, typ any
	if f.Status != nil {
		status = string(*f.Status)
	}
	if f.Type != nil {
		typ = string(*f.Type)
	}
	if sc.anyOwner {
		rows, err := s.queryOperatorPage(ctx, f, status, typ)
		if err != nil {
			return nil, nil, fmt.Errorf("list jobs: %w", classify(err))
		}
		jobs, next, err := s.scanPage(rows, true)
		if err != nil {
			return nil, nil, fmt.Errorf("list jobs: %w", classify(err))
		}
		return jobs, next, nil
	}
	// A user's list reads from a replica in use, if any, and from the
	// primary when the replica fails.
	if r := s.replicas.pick(); r != nil {
		jobs, next, err := s.userPage(ctx, r.db, sc.owner, f, status, typ)
		if err == nil {
			r.listed.Add(1)
			return jobs, next, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		s.replicas.failed(r)
	}
	return s.userPage(ctx, s.db, sc.owner, f, status, typ)
}

// userPage reads one page of the owner's list from db.
func (s *Store) userPage(ctx context.Context, db *sqlx.DB, owner string, f ListFilter, status, typ any) ([]job.Job, *Cursor, error) {
	var afterTime, afterID any
	if f.After != nil {
		afterTime, afterID = f.After.CreatedAt, f.After.ID
	}
	rows, err := db.QueryContext(ctx, listSQL, f.Limit, s.listMaxBytes, owner, status, typ, afterTime, afterID)
	if err != nil {
		return nil, nil, fmt.Errorf("list jobs: %w", classify(err))
	}
	jobs, next, err := s.scanPage(rows, false)
	if err != nil {
		return nil, nil, fmt.Errorf("list jobs: %w", classify(err))
	}
	return jobs, next, nil
}

// scanPage reads the rows of a page statement (pageSQL) and the cursor of
// the next page, the operator's columns too when operator is set.
func (s *Store) scanPage(rows *sql.Rows, operator bool) ([]job.Job, *Cursor, error) {
	defer rows.Close()
	jobs := []job.Job{}
	var total, size int
	for rows.Next() {
		var j job.Job
		var err error
		if operator {
			err = scanOperatorJob(rows, &j, &total)
		} else {
			err = scanJob(rows, &j, &total)
		}
		if err != nil {
			return nil, nil, err
		}
		// The statement counted stored sizes, which are smaller than the
		// text for a compressed result: the bound holds for what was read.
		// The rest of the reply is read off the connection and dropped.
		if size += len(j.Result); size > s.listMaxBytes && len(jobs) > 0 {
			break
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(jobs) == total {
		return jobs, nil, nil
	}
	last := jobs[len(jobs)-1]
	return jobs, &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}, nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// ValidJSONObject reports whether b is one JSON object; inputs and results
// must be.
func ValidJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 1 && b[0] == '{' && json.Valid(b)
}
