package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jobsd/jobsd/gen"
)

// TestWebhookCommands: an endpoint's life through jobsctl against the real
// API: create (secret printed once), list, update, rotate, test, deliveries,
// replay, the admin list, delete; bad arguments are usage errors.
func TestWebhookCommands(t *testing.T) {
	var e gen.WebhookEndpoint
	if err := json.Unmarshal([]byte(mustRun(t, "webhook", "create", "--events", "job.failed", "https://hooks.example.com/ctl")), &e); err != nil ||
		e.Secret == nil || !strings.HasPrefix(*e.Secret, "whsec_") || len(e.EventTypes) != 1 {
		t.Fatalf("create: %+v, %v", e, err)
	}
	id := e.Id.String()
	if list := mustRun(t, "webhook", "list"); !strings.Contains(list, id) || strings.Contains(list, "whsec_") {
		t.Errorf("list:\n%s", list)
	}
	var u gen.WebhookEndpoint
	if err := json.Unmarshal([]byte(mustRun(t, "webhook", "update", id, "--disable", "--new-url", "https://hooks.example.com/v2")), &u); err != nil || u.Enabled || u.Url != "https://hooks.example.com/v2" {
		t.Errorf("update: %+v, %v", u, err)
	}
	var r gen.WebhookEndpoint
	if err := json.Unmarshal([]byte(mustRun(t, "webhook", "rotate", id)), &r); err != nil || r.Secret == nil || *r.Secret == *e.Secret {
		t.Errorf("rotate: %+v, %v", r, err)
	}
	var d gen.WebhookDelivery
	if err := json.Unmarshal([]byte(mustRun(t, "webhook", "test", id)), &d); err != nil || d.EventType != gen.DeliveryWebhookTest {
		t.Fatalf("test: %+v, %v", d, err)
	}
	if out := mustRun(t, "webhook", "deliveries", id); !strings.Contains(out, d.Id.String()) || !strings.Contains(out, "webhook.test") {
		t.Errorf("deliveries:\n%s", out)
	}
	mustRun(t, "webhook", "replay", id, d.Id.String())
	if out := mustRun(t, "admin", "webhooks", "--limit", "100"); !strings.Contains(out, "USER") {
		t.Errorf("admin webhooks:\n%s", out)
	}
	mustRun(t, "webhook", "delete", id)
	if code, _, errOut := jobsctl(t, "webhook", "get", id); code != exitError || !strings.Contains(errOut, "Webhook not found") {
		t.Errorf("get after delete: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{
		{"webhook"}, {"webhook", "frobnicate"}, {"webhook", "get", "not-a-uuid"}, {"webhook", "update", id},
		{"webhook", "replay", id}, {"webhook", "update", id, "--enable", "--disable"}, {"webhook", "update", id, "--url", "https://x.example/"},
	} {
		if code, _, _ := jobsctl(t, args...); code != exitUsage {
			t.Errorf("jobsctl %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
	if code, _, errOut := jobsctl(t, "webhook", "create", "http://hooks.example.com/"); code != exitError || !strings.Contains(errOut, "https") {
		t.Errorf("http URL: exit %d, %q", code, errOut)
	}
}
