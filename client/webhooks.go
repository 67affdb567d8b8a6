package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/webhook"
)

// Webhooks (docs/webhooks.md): endpoints that receive a signed event when
// one of the caller's jobs ends, and the receiver's side, VerifyWebhook and
// ParseWebhook.

// CreateWebhook registers url for the caller's jobs, for eventTypes
// ("job.completed", "job.failed"; both when empty). The answer's Secret is
// the only time the signing secret is shown.
func (c *Client) CreateWebhook(ctx context.Context, url string, eventTypes ...string) (*gen.WebhookEndpoint, error) {
	body := gen.CreateWebhookRequest{Url: url}
	if len(eventTypes) > 0 {
		ts := webhookEventTypes(eventTypes)
		body.EventTypes = &ts
	}
	resp, err := c.api.CreateWebhookWithResponse(ctx, body)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON201, resp.HTTPResponse, resp.Body)
}

// ListWebhooks returns the caller's endpoints.
func (c *Client) ListWebhooks(ctx context.Context) (*gen.WebhookEndpointList, error) {
	resp, err := c.api.ListWebhooksWithResponse(ctx)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// GetWebhook returns one of the caller's endpoints.
func (c *Client) GetWebhook(ctx context.Context, id string) (*gen.WebhookEndpoint, error) {
	u, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.GetWebhookWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// UpdateWebhook changes an endpoint's URL, event types or enabled flag
// (nil fields stay).
func (c *Client) UpdateWebhook(ctx context.Context, id string, u gen.UpdateWebhookRequest) (*gen.WebhookEndpoint, error) {
	wid, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.UpdateWebhookWithResponse(ctx, wid, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// DeleteWebhook deletes an endpoint and its deliveries.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	u, err := parseWebhookID(id)
	if err != nil {
		return err
	}
	resp, err := c.api.DeleteWebhookWithResponse(ctx, u)
	if err != nil {
		return err
	}
	if resp.StatusCode() != http.StatusNoContent {
		return apiError(resp.HTTPResponse, resp.Body)
	}
	return nil
}

// RotateWebhookSecret gives an endpoint a new signing secret (in the
// answer's Secret); the old one keeps signing beside it for 24 hours.
func (c *Client) RotateWebhookSecret(ctx context.Context, id string) (*gen.WebhookEndpoint, error) {
	u, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.RotateWebhookSecretWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// TestWebhook queues a webhook.test event to an endpoint.
func (c *Client) TestWebhook(ctx context.Context, id string) (*gen.WebhookDelivery, error) {
	u, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.TestWebhookWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON202, resp.HTTPResponse, resp.Body)
}

// WebhookDeliveries returns a page of an endpoint's deliveries, newest
// first (limit 0: the server's default; cursor "": the first page).
func (c *Client) WebhookDeliveries(ctx context.Context, id string, limit int, cursor string) (*gen.WebhookDeliveryList, error) {
	u, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	var p gen.ListWebhookDeliveriesParams
	if limit > 0 {
		p.Limit = &limit
	}
	if cursor != "" {
		p.Cursor = &cursor
	}
	resp, err := c.api.ListWebhookDeliveriesWithResponse(ctx, u, &p)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// ReplayWebhookDelivery queues a delivery again, with the same webhook-id.
func (c *Client) ReplayWebhookDelivery(ctx context.Context, id, deliveryID string) (*gen.WebhookDelivery, error) {
	u, err := parseWebhookID(id)
	if err != nil {
		return nil, err
	}
	d, err := parseWebhookID(deliveryID)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.ReplayWebhookDeliveryWithResponse(ctx, u, d)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON202, resp.HTTPResponse, resp.Body)
}

// AdminWebhooks returns a page of every user's endpoints with their
// owners and health (admins only).
func (c *Client) AdminWebhooks(ctx context.Context, limit int, cursor string) (*gen.AdminWebhookEndpointList, error) {
	var p gen.AdminListWebhooksParams
	if limit > 0 {
		p.Limit = &limit
	}
	if cursor != "" {
		p.Cursor = &cursor
	}
	resp, err := c.api.AdminListWebhooksWithResponse(ctx, &p)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

func parseWebhookID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return uuid.UUID{}, fmt.Errorf("client: invalid webhook id %q: want a UUID like 0190a8f2-5c3e-7b1a-9d2e-4f6a8b0c1d2e", id)
	}
	return u, nil
}

func webhookEventTypes(ts []string) []gen.WebhookEventType {
	out := make([]gen.WebhookEventType, len(ts))
	for i, t := range ts {
		out[i] = gen.WebhookEventType(t)
	}
	return out
}

// VerifyWebhook checks a delivery as a receiver gets it: header holds its
// webhook-id, webhook-timestamp and webhook-signature headers, body its
// exact bytes (read before any JSON decoding), secret the endpoint's
// signing secret ("whsec_..."). It fails unless a signature matches and
// the timestamp is within 5 minutes of now. Any Standard Webhooks library
// checks the same.
func VerifyWebhook(secret string, header http.Header, body []byte) error {
	return webhook.Verify(secret, header, body)
}

// WebhookEvent is a delivery's body.
type WebhookEvent struct {
	// ID is the webhook-id header: the same on every retry and replay of
	// one event, so a receiver drops the ones it has seen.
	ID string `json:"-"`
	// Type is "job.completed", "job.failed" or "webhook.test".
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	// ResultOmitted: the job's result was too large to send; Data's
	// result is null, and Get returns the job with it.
	ResultOmitted bool `json:"resultOmitted,omitempty"`
}

// Job decodes Data as the job it is about (job events only).
func (e *WebhookEvent) Job() (*gen.Job, error) {
	var j gen.Job
	if err := json.Unmarshal(e.Data, &j); err != nil {
		return nil, fmt.Errorf("client: webhook %s data: %w", e.Type, err)
	}
	return &j, nil
}

// ParseWebhook verifies a delivery (VerifyWebhook) and decodes it.
func ParseWebhook(secret string, header http.Header, body []byte) (*WebhookEvent, error) {
	if err := VerifyWebhook(secret, header, body); err != nil {
		return nil, err
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, fmt.Errorf("client: webhook body: %w", err)
	}
	ev.ID = header.Get(webhook.HeaderID)
	return &ev, nil
}
