package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/apiclient"
)

// DefaultUserAgent is the User-Agent sent unless WithUserAgent says otherwise.
const DefaultUserAgent = "jobsd-client/1"

// TokenSource supplies the bearer token sent with every request. Token is
// called once per request, so an implementation may refresh or cache.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource that always returns the same token.
type StaticToken string

// Token implements TokenSource.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// TokenFunc adapts a function to a TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token implements TokenSource.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// Option configures a Client.
type Option func(*config)

type config struct {
	tokens    TokenSource
	http      *http.Client
	userAgent string
}

// WithTokenSource sets where the bearer token of each request comes from.
func WithTokenSource(ts TokenSource) Option { return func(c *config) { c.tokens = ts } }

// WithToken sends the same bearer token with every request.
func WithToken(token string) Option { return WithTokenSource(StaticToken(token)) }

// WithHTTPClient sets the HTTP client. Its Timeout, if any, must exceed the
// long-poll wait (30 s) or Wait's requests are cut short; prefer contexts.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.http = hc } }

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option { return func(c *config) { c.userAgent = ua } }

// Client talks to one jobsd API. It is safe for concurrent use.
type Client struct {
	api *apiclient.ClientWithResponses
}

// New returns a client for the API at baseURL, e.g. "http://127.0.0.1:8080".
func New(baseURL string, opts ...Option) (*Client, error) {
	cfg := config{http: &http.Client{}, userAgent: DefaultUserAgent}
	for _, o := range opts {
		o(&cfg)
	}
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("client: base URL %q must start with http:// or https://", baseURL)
	}
	editor := func(ctx context.Context, req *http.Request) error {
		if cfg.userAgent != "" {
			req.Header.Set("User-Agent", cfg.userAgent)
		}
		if cfg.tokens == nil {
			return nil
		}
		tok, err := cfg.tokens.Token(ctx)
		if err != nil {
			return fmt.Errorf("client: token: %w", err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return nil
	}
	api, err := apiclient.NewClientWithResponses(strings.TrimRight(baseURL, "/"),
		apiclient.WithHTTPClient(cfg.http), apiclient.WithRequestEditorFn(editor))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{api: api}, nil
}

// API returns the generated client underneath, for what this package does
// not wrap (its requests carry the same token and User-Agent).
func (c *Client) API() *apiclient.ClientWithResponses { return c.api }

// CreateOptions are the optional parts of a create request.
type CreateOptions struct {
	// IdempotencyKey makes the create safe to retry: the same key with the
	// same body answers with the original job. Empty sends none.
	IdempotencyKey string
}

func (o CreateOptions) key() *string {
	if o.IdempotencyKey == "" {
		return nil
	}
	k := o.IdempotencyKey
	return &k
}

// CreatePreview creates an AI_PREVIEW job (admins only) and returns it,
// usually PENDING.
func (c *Client) CreatePreview(ctx context.Context, req gen.PromptPreviewRequest, opts CreateOptions) (*gen.Job, error) {
	resp, err := c.api.CreatePromptPreviewWithResponse(ctx, &gen.CreatePromptPreviewParams{IdempotencyKey: opts.key()}, req)
	if err != nil {
		return nil, err
	}
	if resp.JSON202 == nil {
		return nil, apiError(resp.HTTPResponse, resp.Body)
	}
	return resp.JSON202, nil
}

// CreateJob creates a job of jobType (PARSE_DOCUMENT, GAP_DETECTION,
// RISK_ANALYSIS or REPORT_GENERATION) with input, anything that encodes as
// that type's input object: a gen.RiskAnalysisInput, a map, a
// json.RawMessage. AI_PREVIEW jobs are created with CreatePreview.
func (c *Client) CreateJob(ctx context.Context, jobType string, input any, opts CreateOptions) (*gen.Job, error) {
	in, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("client: encoding input: %w", err)
	}
	raw, err := json.Marshal(struct {
		Type  string          `json:"type"`
		Input json.RawMessage `json:"input"`
	}{jobType, in})
	if err != nil {
		return nil, fmt.Errorf("client: encoding request: %w", err)
	}
	var body gen.CreateJobRequest
	if err := body.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("client: encoding request: %w", err)
	}
	resp, err := c.api.CreateJobWithResponse(ctx, &gen.CreateJobParams{IdempotencyKey: opts.key()}, body)
	if err != nil {
		return nil, err
	}
	if resp.JSON202 == nil {
		return nil, apiError(resp.HTTPResponse, resp.Body)
	}
	return resp.JSON202, nil
}

// ParseID parses a job id in the canonical 36-character UUID form.
func ParseID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return uuid.UUID{}, fmt.Errorf("client: invalid job id %q: want a UUID like 550e8400-e29b-41d4-a716-446655440000", id)
	}
	return u, nil
}

// Get returns the job with the given id.
func (c *Client) Get(ctx context.Context, id string) (*gen.Job, error) {
	p, err := c.poll(ctx, id, "", 0)
	if err != nil {
		return nil, err
	}
	return p.job, nil
}

// Cancel ends a PENDING or PROCESSING job as FAILED ("Cancelled by user")
// and returns it; a finished job is an *APIError with status 409 (see
// IsConflict).
func (c *Client) Cancel(ctx context.Context, id string) (*gen.Job, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.CancelJobWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	if resp.JSON200 == nil {
		return nil, apiError(resp.HTTPResponse, resp.Body)
	}
	return resp.JSON200, nil
}

// ListOptions select a page of the caller's jobs. Zero values are omitted.
type ListOptions struct {
	Limit  int           // jobs per page, 1 to 100 (server default 20)
	Cursor string        // the NextCursor of the previous page
	Status gen.JobStatus // only jobs with this status
	Type   gen.JobType   // only jobs of this type
}

// List returns one page of the caller's jobs, newest first. The page's
// NextCursor is nil on the last page.
func (c *Client) List(ctx context.Context, opts ListOptions) (*gen.JobList, error) {
	var p gen.ListJobsParams
	if opts.Limit != 0 {
		p.Limit = &opts.Limit
	}
	if opts.Cursor != "" {
		p.Cursor = &opts.Cursor
	}
	if opts.Status != "" {
		p.Status = &opts.Status
	}
	if opts.Type != "" {
		p.Type = &opts.Type
	}
	resp, err := c.api.ListJobsWithResponse(ctx, &p)
	if err != nil {
		return nil, err
	}
	if resp.JSON200 == nil {
		return nil, apiError(resp.HTTPResponse, resp.Body)
	}
	return resp.JSON200, nil
}

// All iterates over every job that opts select, fetching page after page
// (opts.Limit is the page size). An error ends the iteration after it is
// yielded with a zero Job.
func (c *Client) All(ctx context.Context, opts ListOptions) iter.Seq2[gen.Job, error] {
	return func(yield func(gen.Job, error) bool) {
		for {
			page, err := c.List(ctx, opts)
			if err != nil {
				yield(gen.Job{}, err)
				return
			}
			for _, j := range page.Jobs {
				if !yield(j, nil) {
					return
				}
			}
			if page.NextCursor == nil || *page.NextCursor == "" {
				return
			}
			opts.Cursor = *page.NextCursor
		}
	}
}

// polled is one answer to GET /api/jobs/{id}.
type polled struct {
	job        *gen.Job // nil for a 304
	etag       string
	retryAfter int // seconds; 0 when absent
}

// poll sends one GET /api/jobs/{id}, conditional on etag when it is set,
// long-polling for wait seconds when wait > 0.
func (c *Client) poll(ctx context.Context, id, etag string, wait int) (polled, error) {
	u, err := ParseID(id)
	if err != nil {
		return polled{}, err
	}
	var p gen.GetJobParams
	if etag != "" {
		p.IfNoneMatch = &etag
	}
	if wait > 0 {
		p.WaitSeconds = &wait
	}
	resp, err := c.api.GetJobWithResponse(ctx, u, &p)
	if err != nil {
		return polled{}, err
	}
	var out polled
	switch {
	case resp.StatusCode() == http.StatusOK && resp.JSON200 != nil:
		out.job = resp.JSON200
		if h := resp.Headers200; h != nil {
			out.etag, out.retryAfter = deref(h.ETag), deref(h.RetryAfter)
		}
	case resp.StatusCode() == http.StatusNotModified:
		if h := resp.Headers304; h != nil {
			out.etag, out.retryAfter = deref(h.ETag), deref(h.RetryAfter)
		}
		if out.etag == "" {
			out.etag = etag
		}
	default:
		return polled{}, apiError(resp.HTTPResponse, resp.Body)
	}
	return out, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// apiError turns a non-2xx answer into an *APIError.
func apiError(resp *http.Response, body []byte) error {
	if resp == nil {
		return errors.New("client: no response")
	}
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	var eb gen.Error
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = eb.Error
	} else if s := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil))); s != "" && len(s) <= 500 {
		e.Message = s
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}
