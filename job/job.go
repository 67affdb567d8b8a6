// Package job is the domain: what a job is (its types, statuses and the
// rules between them), the texts a client may read in a failed job's error,
// and the defaults every part of jobsd shares. It imports nothing of
// jobsd's: the store keeps jobs (one Job type for every read, a user's or an
// operator's), the worker runs them, the API serves them, all in these
// terms. The generated contract types (gen/) are the contract's bytes: the
// HTTP edge (impl/, client/) encodes jobs with them, and the job types
// (jobtype/) decode each type's documented input with them; nothing below
// (job/, store/, worker/, dispatch/) links them, and only impl/ links the
// generated server (scripts/deps-check.sh holds both).
package job

import (
	"time"

	"github.com/google/uuid"
)

// Type is a job type.
type Type string

// The job types, as in openapi.yaml's JobType.
const (
	TypeAIPreview        Type = "AI_PREVIEW"
	TypeParseDocument    Type = "PARSE_DOCUMENT"
	TypeGapDetection     Type = "GAP_DETECTION"
	TypeRiskAnalysis     Type = "RISK_ANALYSIS"
	TypeReportGeneration Type = "REPORT_GENERATION"
)

// Types are the job types, in the contract's order.
var Types = []Type{TypeAIPreview, TypeParseDocument, TypeGapDetection, TypeRiskAnalysis, TypeReportGeneration}

// Status is where a job is in its life:
//
//	PENDING ──claim──▶ PROCESSING ──▶ COMPLETED
//	   │                  │  ▲  └───▶ FAILED
//	   │                  └──┘ retry (attempts left)
//	   └── cancel ──────────────────▶ FAILED
//
// A first attempt handed back at a worker's shutdown makes a PROCESSING job
// PENDING again. COMPLETED and FAILED are terminal: a finished job never
// changes (which is what lets clients, ETags and caches treat it as final).
type Status string

// The statuses.
const (
	StatusPending    Status = "PENDING"
	StatusProcessing Status = "PROCESSING"
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
)

// Terminal reports whether s is COMPLETED or FAILED.
func (s Status) Terminal() bool { return s == StatusCompleted || s == StatusFailed }

// Job is a job as clients may see it. It has no input: no response shows
// it, and a PARSE_DOCUMENT input is up to 7 MB, which every poll, list and
// cancel would read for nothing; a worker gets the input with its attempt.
type Job struct {
	ID          uuid.UUID  `db:"id"`
	UserID      string     `db:"user_id"`
	Type        Type       `db:"type"`
	Status      Status     `db:"status"`
	Result      []byte     `db:"result"` // a JSON object; nil until COMPLETED
	Error       *string    `db:"error"`  // nil unless FAILED
	Attempts    int        `db:"attempts"`
	MaxAttempts int        `db:"max_attempts"`
	CreatedAt   time.Time  `db:"created_at"`
	StartedAt   *time.Time `db:"started_at"`
	CompletedAt *time.Time `db:"completed_at"`
	UpdatedAt   time.Time  `db:"updated_at"`
	// Version changes whenever the job does: its ETag, and the fence of a
	// change made from a version read earlier.
	Version int64 `db:"version"`

	// What only operators see: filled by reads in an operator's scope,
	// nil in a user's.
	WorkerID     *string    `db:"worker_id"`     // the worker that holds or last held it
	CancelledBy  *string    `db:"cancelled_by"`  // who cancelled it
	RequeuedFrom *uuid.UUID `db:"requeued_from"` // the FAILED job it re-runs
	RequeuedAs   *uuid.UUID `db:"requeued_as"`   // the job that re-runs it
}

// The texts a FAILED job's error may hold that are not a handler's own
// (the handlers' catalogue is in jobtype/doc.go). Clients may match on them:
// never reword.
const (
	ErrTextWorkerLost       = "Worker lost while processing the job"
	ErrTextCancelled        = "Cancelled by user"
	ErrTextCancelledByAdmin = "Cancelled by an administrator"
	ErrTextTimedOut         = "Job attempt timed out"
	ErrTextInternal         = "Internal error while processing the job"
)

// Defaults shared by the API, the store, the worker and their settings.
const (
	// DefaultMaxAttempts is how many attempts a new job gets.
	DefaultMaxAttempts = 3
	// DefaultMaxBodyBytes bounds a request body (8 MiB).
	DefaultMaxBodyBytes = 8 << 20
	// DefaultDBConns is a process's connection pool size.
	DefaultDBConns = 20
	// DefaultConcurrency is how many jobs a worker runs at once.
	DefaultConcurrency = 8
)
