package impl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/timestamp"
)

// ListJobs pages through the caller's jobs, newest first.
func (s *Server) ListJobs(ctx context.Context, req server.ListJobsRequestObject) (server.ListJobsResponseObject, error) {
	f := store.ListFilter{Limit: 20}
	if req.Params.Limit != nil {
		f.Limit = *req.Params.Limit
	}
	if req.Params.Status != nil {
		st := job.Status(*req.Params.Status)
		f.Status = &st
	}
	if req.Params.Type != nil {
		t := job.Type(*req.Params.Type)
		f.Type = &t
	}
	if req.Params.Cursor != nil {
		c, err := store.ParseCursor(*req.Params.Cursor)
		if err != nil {
			return nil, errBadCursor
		}
		f.After = &c
	}
	jobs, next, err := s.store.List(ctx, store.OwnedBy(principalFrom(ctx).Subject), f)
	if err != nil {
		return nil, err
	}
	out := gen.JobList{Jobs: make([]gen.Job, 0, len(jobs))}
	for i := range jobs {
		out.Jobs = append(out.Jobs, toAPIJob(&jobs[i]))
	}
	if next != nil {
		c := next.String()
		out.NextCursor = &c
	}
	return server.ListJobs200JSONResponse(out), nil
}

// CreatePromptPreview creates an AI_PREVIEW job; admins only (requireAdmin
// has refused everyone else).
func (s *Server) CreatePromptPreview(ctx context.Context, req server.CreatePromptPreviewRequestObject) (server.CreatePromptPreviewResponseObject, error) {
	input, err := json.Marshal(req.Body)
	if err != nil {
		return nil, fmt.Errorf("encode preview input: %w", err)
	}
	j, err := s.create(ctx, job.TypeAIPreview, input, "POST /api/admin/prompts/preview", req.Params.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	return server.CreatePromptPreview202JSONResponse{AcceptedJSONResponse: accepted(j)}, nil
}

// CreateJob creates a job of any type but AI_PREVIEW.
func (s *Server) CreateJob(ctx context.Context, req server.CreateJobRequestObject) (server.CreateJobResponseObject, error) {
	typ, input, err := jobInput(req.Body)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, err.Error())
	}
	j, err := s.create(ctx, typ, input, "POST /api/jobs", req.Params.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	return server.CreateJob202JSONResponse{AcceptedJSONResponse: accepted(j)}, nil
}

// create inserts the job. The idempotency fingerprint covers the type and
// the canonical JSON of the input, so "same body" ignores key order and spacing.
func (s *Server) create(ctx context.Context, typ job.Type, input []byte, scope string, key *string) (*job.Job, error) {
	nj := store.NewJob{
		UserID:      principalFrom(ctx).Subject,
		Type:        typ,
		Input:       input,
		MaxAttempts: s.maxAttempts,
	}
	if key != nil {
		canon, err := canonicalJSON(input)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte(string(typ)+"\n"), canon...))
		nj.IdempotencyScope, nj.IdempotencyKey, nj.RequestHash = scope, *key, sum[:]
	}
	j, replayed, err := s.store.Create(ctx, nj)
	if err == nil && !replayed {
		s.metrics.JobCreated(string(typ))
	}
	return j, err
}

// canonicalJSON re-encodes b with sorted keys and no spacing; numbers keep
// their text.
func canonicalJSON(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return json.Marshal(v)
}

// accepted is the 202 of a creation. Retry-After says when to poll, so a
// finished job (an Idempotency-Key replay) has none, as for its polls.
func accepted(j *job.Job) server.AcceptedJSONResponse {
	loc := "/api/jobs/" + j.ID.String()
	h := server.AcceptedResponseHeaders{Location: &loc}
	if !j.Status.Terminal() {
		retry := RetryAfterSeconds
		h.RetryAfter = &retry
	}
	return server.AcceptedJSONResponse{Body: toAPIJob(j), Headers: h}
}

// toAPIJob is the Job resource exactly as documented: every key present,
// absent values null, timestamps with three fractional digits in UTC.
func toAPIJob(j *job.Job) gen.Job {
	out := gen.Job{
		Id:        j.ID,
		Type:      gen.JobType(j.Type),
		Status:    gen.JobStatus(j.Status),
		Error:     j.Error,
		Attempts:  j.Attempts,
		CreatedAt: timestamp.New(j.CreatedAt),
		UpdatedAt: timestamp.New(j.UpdatedAt),
	}
	if j.Result != nil {
		r := json.RawMessage(j.Result)
		out.Result = &r
	}
	if j.StartedAt != nil {
		out.StartedAt = timestamp.Ptr(*j.StartedAt)
	}
	if j.CompletedAt != nil {
		out.CompletedAt = timestamp.Ptr(*j.CompletedAt)
	}
	return out
}

// inputError is a 400 about one field of the input.
func inputError(field, reason string) error {
	return fmt.Errorf("Invalid request body: field %q %s", field, reason)
}

// MaxDocumentBytes bounds a PARSE_DOCUMENT document after base64 decoding.
const MaxDocumentBytes = 5 << 20

// jobInput picks the typed request out of the union (already validated
// against openapi.yaml) and checks the rules a schema cannot say.
func jobInput(body *gen.CreateJobRequest) (job.Type, []byte, error) {
	v, err := body.ValueByDiscriminator()
	if err != nil {
		return "", nil, errors.New(`Invalid request body: field "type" is not a job type this endpoint creates`)
	}
	var input any
	switch r := v.(type) {
	case gen.ParseDocumentJobRequest:
		// Decoded from base64 by the JSON binder; kin-openapi checked the alphabet.
		if len(r.Input.Document) > MaxDocumentBytes {
			return "", nil, inputError("input.document", fmt.Sprintf("is larger than %d bytes", MaxDocumentBytes))
		}
		input = r.Input
	case gen.GapDetectionJobRequest:
		if (r.Input.Text == nil) == (r.Input.DocumentJobId == nil) {
			return "", nil, inputError("input", `needs exactly one of "text" and "documentJobId"`)
		}
		input = r.Input
	case gen.RiskAnalysisJobRequest:
		if (r.Input.Text == nil) == (r.Input.DocumentJobId == nil) {
			return "", nil, inputError("input", `needs exactly one of "text" and "documentJobId"`)
		}
		input = r.Input
	case gen.ReportGenerationJobRequest:
		if (r.Input.JobIds == nil || len(*r.Input.JobIds) == 0) && (r.Input.Sections == nil || len(*r.Input.Sections) == 0) {
			return "", nil, inputError("input", `needs at least one of "jobIds" and "sections"`)
		}
		input = r.Input
	default:
		return "", nil, errors.New(`Invalid request body: field "type" is not a job type this endpoint creates`)
	}
	disc, _ := body.Discriminator()
	b, err := json.Marshal(input)
	if err != nil {
		return "", nil, fmt.Errorf("Invalid request body: %w", err)
	}
	return job.Type(disc), b, nil
}

// GetHealth says the process is alive.
func (s *Server) GetHealth(ctx context.Context, _ server.GetHealthRequestObject) (server.GetHealthResponseObject, error) {
	return server.GetHealth200JSONResponse{Status: gen.Ok}, nil
}

// GetReady says whether the process can take requests: it is not
// draining, its change listener is connected (without it, long polls and
// event streams would hear of changes only at their timeouts) and the
// database answers. A load balancer stops sending requests to a process
// that says 503.
func (s *Server) GetReady(ctx context.Context, _ server.GetReadyRequestObject) (server.GetReadyResponseObject, error) {
	select {
	case <-s.draining:
		return nil, errorf(http.StatusServiceUnavailable, msgDraining)
	default:
	}
	if s.hub != nil && !s.hub.Up() {
		return nil, errorf(http.StatusServiceUnavailable, msgListenerDown)
	}
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		return nil, errorf(http.StatusServiceUnavailable, msgDatabaseDown)
	}
	return server.GetReady200JSONResponse{Status: gen.ReadyOk, ReadReplicas: readReplicas(s.store.Replicas())}, nil
}

// readReplicas is /readyz's list of the read replicas; nil without any.
func readReplicas(rs []store.ReplicaStatus) *[]gen.ReadReplica {
	if len(rs) == 0 {
		return nil
	}
	out := make([]gen.ReadReplica, 0, len(rs))
	for _, r := range rs {
		rr := gen.ReadReplica{Name: r.Name, InUse: r.InUse}
		if r.Lag >= 0 {
			lag := r.Lag.Seconds()
			rr.LagSeconds = &lag
		}
		if r.Problem != "" {
			problem := r.Problem
			rr.Problem = &problem
		}
		out = append(out, rr)
	}
	return &out
}

// The other reasons /readyz gives for a 503.
const (
	msgDraining     = "Shutting down"
	msgListenerDown = "Change listener unavailable"
	msgDatabaseDown = "Database unavailable"
)

// CancelJob ends the caller's unfinished job as FAILED "Cancelled by user".
func (s *Server) CancelJob(ctx context.Context, req server.CancelJobRequestObject) (server.CancelJobResponseObject, error) {
	j, res, err := s.store.Cancel(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id)
	if err != nil {
		return nil, err
	}
	if res == store.AlreadyFinished {
		return nil, errAlreadyFinished
	}
	s.metrics.JobCancelled()
	return server.CancelJob200JSONResponse(toAPIJob(j)), nil
}
