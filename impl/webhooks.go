package impl

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/timestamp"
	"github.com/jobsd/jobsd/webhook"
)

// The webhook API (docs/webhooks.md): each user's endpoints, their
// deliveries, and the admin's view of every endpoint.

// SecretGrace is how long a rotated secret keeps signing beside the new one.
const SecretGrace = 24 * time.Hour

// The webhook API's documented messages.
const (
	msgWebhookNotFound      = "Webhook not found or does not belong to the requesting user"
	msgAdminWebhookNotFound = "Webhook not found"
	msgWebhookLimit         = "Too many webhook endpoints (at most 10 per user)"
	msgWebhookURL           = `Invalid request body: field "url" must be an absolute https URL without credentials or fragment`
	msgWebhookAddress       = `Invalid request body: field "url" must not point to a private, loopback or link-local address`
)

// WebhookConfig is what the webhook API needs.
type WebhookConfig struct {
	// Sealer seals new signing secrets; nil seals nothing (stored as is).
	Sealer *webhook.Sealer
	// AllowPrivate accepts http URLs and private addresses
	// (JOBS_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
}

// ListWebhooks lists the caller's endpoints.
func (s *Server) ListWebhooks(ctx context.Context, _ server.ListWebhooksRequestObject) (server.ListWebhooksResponseObject, error) {
	es, err := s.store.ListWebhooks(ctx, store.OwnedBy(principalFrom(ctx).Subject), store.MaxWebhooksPerUser, nil)
	if err != nil {
		return nil, err
	}
	out := gen.WebhookEndpointList{Endpoints: make([]gen.WebhookEndpoint, 0, len(es))}
	for i := range es {
		out.Endpoints = append(out.Endpoints, toAPIWebhook(&es[i]))
	}
	return server.ListWebhooks200JSONResponse(out), nil
}

// CreateWebhook registers an endpoint and shows its secret once.
func (s *Server) CreateWebhook(ctx context.Context, req server.CreateWebhookRequestObject) (server.CreateWebhookResponseObject, error) {
	if err := s.checkWebhookURL(req.Body.Url); err != nil {
		return nil, err
	}
	types := []string{store.EventJobCompleted, store.EventJobFailed}
	if req.Body.EventTypes != nil {
		types = eventTypes(*req.Body.EventTypes)
	}
	secret, sealed, err := s.newWebhookSecret()
	if err != nil {
		return nil, err
	}
	e, err := s.store.CreateWebhook(ctx, store.NewWebhook{UserID: principalFrom(ctx).Subject, URL: req.Body.Url, EventTypes: types, Secret: sealed})
	if err != nil {
		return nil, err
	}
	out := toAPIWebhook(e)
	out.Secret = &secret
	return server.CreateWebhook201JSONResponse(out), nil
}

// GetWebhook answers one of the caller's endpoints.
func (s *Server) GetWebhook(ctx context.Context, req server.GetWebhookRequestObject) (server.GetWebhookResponseObject, error) {
	e, err := s.store.GetWebhook(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id)
	if err != nil {
		return nil, err
	}
	return server.GetWebhook200JSONResponse(toAPIWebhook(e)), nil
}

// UpdateWebhook changes one of the caller's endpoints.
func (s *Server) UpdateWebhook(ctx context.Context, req server.UpdateWebhookRequestObject) (server.UpdateWebhookResponseObject, error) {
	u := store.WebhookUpdate{URL: req.Body.Url, Enabled: req.Body.Enabled}
	if u.URL != nil {
		if err := s.checkWebhookURL(*u.URL); err != nil {
			return nil, err
		}
	}
	if req.Body.EventTypes != nil {
		u.EventTypes = eventTypes(*req.Body.EventTypes)
	}
	e, err := s.store.UpdateWebhook(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id, u)
	if err != nil {
		return nil, err
	}
	return server.UpdateWebhook200JSONResponse(toAPIWebhook(e)), nil
}

// DeleteWebhook deletes one of the caller's endpoints.
func (s *Server) DeleteWebhook(ctx context.Context, req server.DeleteWebhookRequestObject) (server.DeleteWebhookResponseObject, error) {
	if err := s.store.DeleteWebhook(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id); err != nil {
		return nil, err
	}
	return server.DeleteWebhook204Response{}, nil
}

// RotateWebhookSecret gives an endpoint a new secret and shows it once.
func (s *Server) RotateWebhookSecret(ctx context.Context, req server.RotateWebhookSecretRequestObject) (server.RotateWebhookSecretResponseObject, error) {
	secret, sealed, err := s.newWebhookSecret()
	if err != nil {
		return nil, err
	}
	e, err := s.store.RotateWebhookSecret(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id, sealed, SecretGrace)
	if err != nil {
		return nil, err
	}
	out := toAPIWebhook(e)
	out.Secret = &secret
	return server.RotateWebhookSecret200JSONResponse(out), nil
}

// TestWebhook queues a test event.
func (s *Server) TestWebhook(ctx context.Context, req server.TestWebhookRequestObject) (server.TestWebhookResponseObject, error) {
	d, err := s.store.QueueTestDelivery(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id)
	if err != nil {
		return nil, err
	}
	return server.TestWebhook202JSONResponse(toAPIDelivery(d)), nil
}

// ListWebhookDeliveries pages through one of the caller's endpoints' deliveries.
func (s *Server) ListWebhookDeliveries(ctx context.Context, req server.ListWebhookDeliveriesRequestObject) (server.ListWebhookDeliveriesResponseObject, error) {
	out, err := s.deliveries(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id, req.Params.Limit, req.Params.Cursor)
	if err != nil {
		return nil, err
	}
	return server.ListWebhookDeliveries200JSONResponse(out), nil
}

// ReplayWebhookDelivery queues one of the caller's deliveries again.
func (s *Server) ReplayWebhookDelivery(ctx context.Context, req server.ReplayWebhookDeliveryRequestObject) (server.ReplayWebhookDeliveryResponseObject, error) {
	d, err := s.store.ReplayDelivery(ctx, store.OwnedBy(principalFrom(ctx).Subject), req.Id, req.DeliveryId)
	if err != nil {
		return nil, err
	}
	return server.ReplayWebhookDelivery202JSONResponse(toAPIDelivery(d)), nil
}

// AdminListWebhooks pages through every user's endpoints.
func (s *Server) AdminListWebhooks(ctx context.Context, req server.AdminListWebhooksRequestObject) (server.AdminListWebhooksResponseObject, error) {
	limit := 20
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	var after *uuid.UUID
	if req.Params.Cursor != nil {
		id, err := uuid.Parse(*req.Params.Cursor)
		if err != nil {
			return nil, errBadCursor
		}
		after = &id
	}
	es, err := s.store.ListWebhooks(ctx, store.Operator(principalFrom(ctx).Subject), limit+1, after)
	if err != nil {
		return nil, err
	}
	out := gen.AdminWebhookEndpointList{Endpoints: make([]gen.WebhookEndpoint, 0, len(es))}
	for i := range es[:min(limit, len(es))] {
		e := toAPIWebhook(&es[i])
		e.UserId = &es[i].UserID
		out.Endpoints = append(out.Endpoints, e)
	}
	if len(es) > limit {
		c := es[limit-1].ID.String()
		out.NextCursor = &c
	}
	return server.AdminListWebhooks200JSONResponse(out), nil
}

// AdminListWebhookDeliveries pages through any endpoint's deliveries.
func (s *Server) AdminListWebhookDeliveries(ctx context.Context, req server.AdminListWebhookDeliveriesRequestObject) (server.AdminListWebhookDeliveriesResponseObject, error) {
	out, err := s.deliveries(ctx, store.Operator(principalFrom(ctx).Subject), req.Id, req.Params.Limit, req.Params.Cursor)
	if err != nil {
		return nil, err
	}
	return server.AdminListWebhookDeliveries200JSONResponse(out), nil
}

// AdminReplayWebhookDelivery queues any endpoint's delivery again.
func (s *Server) AdminReplayWebhookDelivery(ctx context.Context, req server.AdminReplayWebhookDeliveryRequestObject) (server.AdminReplayWebhookDeliveryResponseObject, error) {
	admin := principalFrom(ctx).Subject
	d, err := s.store.ReplayDelivery(ctx, store.Operator(admin), req.Id, req.DeliveryId)
	if err != nil {
		return nil, err
	}
	s.log.Info("admin action", "action", "replay webhook delivery", "admin", admin, "webhook_id", req.Id, "delivery_id", req.DeliveryId)
	return server.AdminReplayWebhookDelivery202JSONResponse(toAPIDelivery(d)), nil
}

func (s *Server) deliveries(ctx context.Context, sc store.Scope, id uuid.UUID, limitParam *int, cursor *string) (gen.WebhookDeliveryList, error) {
	limit := 20
	if limitParam != nil {
		limit = *limitParam
	}
	var before *int64
	if cursor != nil {
		n, err := strconv.ParseInt(*cursor, 10, 64)
		if err != nil || n <= 0 {
			return gen.WebhookDeliveryList{}, errBadCursor
		}
		before = &n
	}
	ds, err := s.store.ListDeliveries(ctx, sc, id, limit+1, before)
	if err != nil {
		return gen.WebhookDeliveryList{}, err
	}
	out := gen.WebhookDeliveryList{Deliveries: make([]gen.WebhookDelivery, 0, len(ds))}
	for i := range ds[:min(limit, len(ds))] {
		out.Deliveries = append(out.Deliveries, toAPIDelivery(&ds[i]))
	}
	if len(ds) > limit {
		c := strconv.FormatInt(ds[limit-1].Seq, 10)
		out.NextCursor = &c
	}
	return out, nil
}

// checkWebhookURL is the 400 of a URL that webhook.CheckURL refuses.
func (s *Server) checkWebhookURL(u string) error {
	err := webhook.CheckURL(u, s.webhooks.AllowPrivate)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return errorf(http.StatusBadRequest, msgWebhookAddress)
	default:
		return errorf(http.StatusBadRequest, msgWebhookURL)
	}
}

// newWebhookSecret makes a signing secret and seals its key for the store.
func (s *Server) newWebhookSecret() (secret string, sealed []byte, err error) {
	secret, err = webhook.NewSecret()
	if err != nil {
		return "", nil, err
	}
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		return "", nil, err
	}
	sealer := s.webhooks.Sealer
	if sealer == nil {
		sealer, _ = webhook.NewSealer("")
	}
	sealed, err = sealer.Seal(key)
	return secret, sealed, err
}

func eventTypes(ts []gen.WebhookEventType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

func toAPIWebhook(e *store.WebhookEndpoint) gen.WebhookEndpoint {
	types := make([]gen.WebhookEventType, len(e.EventTypes))
	for i, t := range e.EventTypes {
		types[i] = gen.WebhookEventType(t)
	}
	return gen.WebhookEndpoint{
		Id:                  e.ID,
		Url:                 e.URL,
		EventTypes:          types,
		Enabled:             e.Enabled,
		DisabledReason:      e.DisabledReason,
		ConsecutiveFailures: e.ConsecutiveFailures,
		LastSuccessAt:       timePtr(e.LastSuccessAt),
		LastFailureAt:       timePtr(e.LastFailureAt),
		CreatedAt:           timestamp.New(e.CreatedAt),
		UpdatedAt:           timestamp.New(e.UpdatedAt),
	}
}

func toAPIDelivery(d *store.WebhookDelivery) gen.WebhookDelivery {
	return gen.WebhookDelivery{
		Id:             d.ID,
		WebhookId:      d.EndpointID,
		EventType:      gen.WebhookDeliveryEventType(d.EventType),
		JobId:          d.JobID,
		Status:         gen.WebhookDeliveryStatus(d.Status),
		Attempts:       d.Attempts,
		CreatedAt:      timestamp.New(d.OccurredAt),
		NextAttemptAt:  timePtr(d.NextAttemptAt),
		LastAttemptAt:  timePtr(d.LastAttemptAt),
		LastStatusCode: d.LastStatusCode,
		LastLatencyMs:  d.LastLatencyMs,
		LastError:      d.LastError,
	}
}

func timePtr(t *time.Time) *timestamp.Time {
	if t == nil {
		return nil
	}
	return timestamp.Ptr(*t)
}

// WebhookJSON is a job as the data of a webhook event: exactly the JSON
// body of GET /api/jobs/{id} (the same encoder), without its trailing
// newline.
func WebhookJSON(j *job.Job) ([]byte, error) {
	b, err := encodeJob(toAPIJob(j))
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}
