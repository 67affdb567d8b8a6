package conformance

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

type webhookEndpoint struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	EventTypes     []string `json:"eventTypes"`
	Enabled        bool     `json:"enabled"`
	DisabledReason *string  `json:"disabledReason"`
	Secret         *string  `json:"secret"`
	UserID         *string  `json:"userId"`
}

type webhookDelivery struct {
	ID        string  `json:"id"`
	WebhookID string  `json:"webhookId"`
	EventType string  `json:"eventType"`
	JobID     *string `json:"jobId"`
	Status    string  `json:"status"`
}

// createWebhook registers url for the token's user and requires a 201
// with the secret.
func createWebhook(t *testing.T, tok, body string) webhookEndpoint {
	t.Helper()
	resp, b := do(t, "POST", "/api/webhooks", jsonHeader(tok), []byte(body))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", resp.StatusCode, b)
	}
	e := decode[webhookEndpoint](t, b)
	if e.Secret == nil || !strings.HasPrefix(*e.Secret, "whsec_") {
		t.Fatalf("create webhook: no whsec_ secret in %s", b)
	}
	// A deployment's test user keeps no endpoint between runs (the
	// per-user limit would fill up); an endpoint already deleted is a 404.
	t.Cleanup(func() { do(t, "DELETE", "/api/webhooks/"+e.ID, bearer(tok), nil) })
	return e
}

// TestWebhookEndpoints: the owner's whole life of an endpoint: create
// (the secret shown once, both event types by default), get and list
// (never the secret), update, rotate (a new secret), a test event, its
// deliveries, replay, delete.
func TestWebhookEndpoints(t *testing.T) {
	requireCreate(t)
	tok := token(t, newUser(t), false)
	e := createWebhook(t, tok, `{"url":"https://hooks.example.com/jobsd"}`)
	if strings.Join(e.EventTypes, ",") != "job.completed,job.failed" || !e.Enabled || e.DisabledReason != nil {
		t.Errorf("created endpoint: %+v", e)
	}
	path := "/api/webhooks/" + e.ID

	resp, b := do(t, "GET", path, bearer(tok), nil)
	if resp.StatusCode != 200 || bytes.Contains(b, []byte("secret")) || bytes.Contains(b, []byte("whsec_")) {
		t.Errorf("get: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", "/api/webhooks", bearer(tok), nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(e.ID)) || bytes.Contains(b, []byte("whsec_")) {
		t.Errorf("list: %d %s", resp.StatusCode, b)
	}

	resp, b = do(t, "PATCH", path, jsonHeader(tok), []byte(`{"eventTypes":["job.failed"],"url":"https://hooks.example.com/v2"}`))
	if got := decode[webhookEndpoint](t, b); resp.StatusCode != 200 || got.URL != "https://hooks.example.com/v2" || strings.Join(got.EventTypes, ",") != "job.failed" {
		t.Errorf("update: %d %s", resp.StatusCode, b)
	}

	resp, b = do(t, "POST", path+"/rotate-secret", bearer(tok), nil)
	if got := decode[webhookEndpoint](t, b); resp.StatusCode != 200 || got.Secret == nil || *got.Secret == *e.Secret {
		t.Errorf("rotate: %d %s", resp.StatusCode, b)
	}

	resp, b = do(t, "POST", path+"/test", bearer(tok), nil)
	d := decode[webhookDelivery](t, b)
	if resp.StatusCode != http.StatusAccepted || d.EventType != "webhook.test" || d.WebhookID != e.ID || d.JobID != nil || d.Status != "PENDING" {
		t.Errorf("test: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", path+"/deliveries?limit=5", bearer(tok), nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(d.ID)) {
		t.Errorf("deliveries: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "POST", path+"/deliveries/"+d.ID+"/replay", bearer(tok), nil)
	if got := decode[webhookDelivery](t, b); resp.StatusCode != http.StatusAccepted || got.ID != d.ID {
		t.Errorf("replay: %d %s", resp.StatusCode, b)
	}

	resp, b = do(t, "DELETE", path, bearer(tok), nil)
	if resp.StatusCode != http.StatusNoContent || len(b) != 0 {
		t.Errorf("delete: %d %s", resp.StatusCode, b)
	}
	resp, _ = do(t, "GET", path, bearer(tok), nil)
	if resp.StatusCode != 404 {
		t.Errorf("get after delete: %d", resp.StatusCode)
	}
}

// TestWebhookNotFoundRules: every operation on another user's endpoint is
// a 404 with the same bytes and headers as an endpoint that does not exist,
// as for jobs.
func TestWebhookNotFoundRules(t *testing.T) {
	requireInProcess(t) // two users: a deployment's token command gives one
	owner := token(t, newUser(t), false)
	e := createWebhook(t, owner, `{"url":"https://hooks.example.com/mine"}`)
	d := webhookDeliveryOf(t, owner, e.ID)
	other := token(t, newUser(t), false)
	none := uuid.NewString()
	ops := []struct{ method, path, body string }{
		{"GET", "/api/webhooks/%s", ""},
		{"PATCH", "/api/webhooks/%s", `{"enabled":false}`},
		{"DELETE", "/api/webhooks/%s", ""},
		{"POST", "/api/webhooks/%s/rotate-secret", ""},
		{"POST", "/api/webhooks/%s/test", ""},
		{"GET", "/api/webhooks/%s/deliveries", ""},
		{"POST", "/api/webhooks/%s/deliveries/" + d + "/replay", ""},
	}
	for _, op := range ops {
		t.Run(op.method+" "+op.path, func(t *testing.T) {
			var body []byte
			h := bearer(other)
			if op.body != "" {
				body, h = []byte(op.body), jsonHeader(other)
			}
			theirs, theirsBody := do(t, op.method, strings.Replace(op.path, "%s", e.ID, 1), h, body)
			missing, missingBody := do(t, op.method, strings.Replace(op.path, "%s", none, 1), h, body)
			if theirs.StatusCode != 404 || missing.StatusCode != 404 {
				t.Fatalf("statuses %d and %d, want 404 and 404", theirs.StatusCode, missing.StatusCode)
			}
			if !bytes.Equal(theirsBody, missingBody) {
				t.Errorf("bodies differ:\nanother user's: %s\nmissing:        %s", theirsBody, missingBody)
			}
			if got := errorMessage(t, theirsBody); got != "Webhook not found or does not belong to the requesting user" {
				t.Errorf("message %q", got)
			}
			for _, hd := range []string{"Content-Type", "Content-Length"} {
				if theirs.Header.Get(hd) != missing.Header.Get(hd) {
					t.Errorf("header %s differs", hd)
				}
			}
		})
	}
	resp, _ := do(t, "GET", "/api/webhooks/"+e.ID, bearer(owner), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("the owner's endpoint after another user's attempts: %d", resp.StatusCode)
	}
}

func webhookDeliveryOf(t *testing.T, tok, id string) string {
	t.Helper()
	resp, b := do(t, "POST", "/api/webhooks/"+id+"/test", bearer(tok), nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("test event: %d %s", resp.StatusCode, b)
	}
	return decode[webhookDelivery](t, b).ID
}

// TestWebhookBadInput: unsafe or malformed URLs, unknown event types and
// unknown fields are 400s in the documented shape, naming the field.
func TestWebhookBadInput(t *testing.T) {
	tok := token(t, newUser(t), false)
	tests := []struct{ name, body, want string }{
		{"plain http", `{"url":"http://hooks.example.com/"}`, `field "url" must be an absolute https URL`},
		{"loopback", `{"url":"https://127.0.0.1/"}`, `must not point to a private, loopback or link-local address`},
		{"metadata", `{"url":"https://169.254.169.254/latest/meta-data/"}`, `must not point to a private`},
		{"IPv6 loopback", `{"url":"https://[::1]/"}`, `must not point to a private`},
		{"IPv4-mapped private", `{"url":"https://[::ffff:10.0.0.1]/"}`, `must not point to a private`},
		{"credentials", `{"url":"https://u:p@hooks.example.com/"}`, `field "url"`},
		{"relative", `{"url":"/hooks"}`, `field "url"`},
		{"no url", `{}`, `"url"`},
		{"unknown event type", `{"url":"https://hooks.example.com/","eventTypes":["job.started"]}`, `eventTypes`},
		{"empty event types", `{"url":"https://hooks.example.com/","eventTypes":[]}`, `eventTypes`},
		{"unknown field", `{"url":"https://hooks.example.com/","secret":"whsec_x"}`, `secret`},
		{"not JSON", `{"url":`, `Invalid request body`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, "POST", "/api/webhooks", jsonHeader(tok), []byte(tt.body))
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", resp.StatusCode, b)
			}
			if msg := errorMessage(t, b); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not contain %q", msg, tt.want)
			}
		})
	}
	t.Run("update with nothing", func(t *testing.T) {
		requireCreate(t)
		e := createWebhook(t, tok, `{"url":"https://hooks.example.com/x"}`)
		resp, b := do(t, "PATCH", "/api/webhooks/"+e.ID, jsonHeader(tok), []byte(`{}`))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("empty update: %d %s", resp.StatusCode, b)
		}
		resp, b = do(t, "GET", "/api/webhooks/not-a-uuid", bearer(tok), nil)
		if resp.StatusCode != http.StatusBadRequest || errorMessage(t, b) != "Invalid UUID format" {
			t.Errorf("malformed id: %d %s", resp.StatusCode, b)
		}
		resp, b = do(t, "POST", "/api/webhooks/"+e.ID+"/deliveries/not-a-uuid/replay", bearer(tok), nil)
		if resp.StatusCode != http.StatusBadRequest || errorMessage(t, b) != "Invalid UUID format" {
			t.Errorf("malformed delivery id: %d %s", resp.StatusCode, b)
		}
	})
}

// TestWebhookLimit: the 11th endpoint of a user is a 409.
func TestWebhookLimit(t *testing.T) {
	requireCreate(t)
	tok := token(t, newUser(t), false)
	resp, b := do(t, "GET", "/api/webhooks", bearer(tok), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	existing := len(decode[struct {
		Endpoints []webhookEndpoint `json:"endpoints"`
	}](t, b).Endpoints) // a deployment's test user may have some
	for range 10 - existing {
		createWebhook(t, tok, `{"url":"https://hooks.example.com/x"}`)
	}
	resp, b = do(t, "POST", "/api/webhooks", jsonHeader(tok), []byte(`{"url":"https://hooks.example.com/x"}`))
	if resp.StatusCode != http.StatusConflict || errorMessage(t, b) != "Too many webhook endpoints (at most 10 per user)" {
		t.Errorf("11th endpoint: %d %s", resp.StatusCode, b)
	}
}

// TestAdminWebhooks: an admin lists every user's endpoints with their
// owners, pages through them, and reads and replays any endpoint's
// deliveries; an unknown one is "Webhook not found".
func TestAdminWebhooks(t *testing.T) {
	requireInProcess(t)
	user := newUser(t)
	e := createWebhook(t, token(t, user, false), `{"url":"https://hooks.example.com/a"}`)
	d := webhookDeliveryOf(t, token(t, user, false), e.ID)
	admin := token(t, newUser(t), true)
	found := false
	cursor := ""
	for page := 0; page < 1000 && !found; page++ {
		resp, b := do(t, "GET", "/api/admin/webhooks?limit=100"+cursor, bearer(admin), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("admin list: %d %s", resp.StatusCode, b)
		}
		l := decode[struct {
			Endpoints  []webhookEndpoint `json:"endpoints"`
			NextCursor *string           `json:"nextCursor"`
		}](t, b)
		for _, x := range l.Endpoints {
			if x.ID == e.ID {
				found = x.UserID != nil && *x.UserID == user && x.Secret == nil
			}
		}
		if l.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *l.NextCursor
	}
	if !found {
		t.Errorf("the admin list lacks %s with its owner", e.ID)
	}
	resp, b := do(t, "GET", "/api/admin/webhooks/"+e.ID+"/deliveries", bearer(admin), nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(d)) {
		t.Errorf("admin deliveries: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "POST", "/api/admin/webhooks/"+e.ID+"/deliveries/"+d+"/replay", bearer(admin), nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("admin replay: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", "/api/admin/webhooks/"+uuid.NewString()+"/deliveries", bearer(admin), nil)
	if resp.StatusCode != 404 || errorMessage(t, b) != "Webhook not found" {
		t.Errorf("admin unknown endpoint: %d %s", resp.StatusCode, b)
	}
}
