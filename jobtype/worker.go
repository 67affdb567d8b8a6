package jobtype

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// WorkerHandlers wires every job type's handler to the worker: the attempt
// number for the provider (its failure markers count attempts), references
// to other jobs read from st, scoped to the job's owner, and one Parser
// with the given limits for all the worker's PDF and DOCX parses.
func WorkerHandlers(st *store.Store, provider model.Provider, parse ParseOptions) map[job.Type]worker.Handler {
	out := map[job.Type]worker.Handler{}
	parser := NewParser(parse)
	for typ, h := range Registry() {
		out[typ] = func(ctx context.Context, a worker.Attempt) (json.RawMessage, error) {
			env := Env{Model: provider, Parser: parser, LoadJob: func(ctx context.Context, id string) (*job.Job, error) {
				return loadRef(ctx, st, a.UserID, id)
			}}
			return h(model.WithAttempt(ctx, a.Attempt), env, a.Input)
		}
	}
	return out
}

// loadRef reads another job of the same user; another user's job is as
// missing as one that does not exist.
func loadRef(ctx context.Context, st *store.Store, userID, id string) (*job.Job, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrReferenceNotFound, id)
	}
	j, err := st.Get(ctx, store.OwnedBy(userID), u)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrReferenceNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Classify is the worker's Classifier for these handlers: whether another
// attempt may help, and the client's text from the catalogue.
func Classify(err error) (retryable bool, clientMessage string) {
	if errors.Is(err, context.DeadlineExceeded) {
		return true, job.ErrTextTimedOut
	}
	return IsRetryable(err), ClientMessage(err)
}
