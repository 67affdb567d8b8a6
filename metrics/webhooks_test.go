package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestWebhooks: the delivery loop's series count what they are told; a nil
// *Webhooks records nothing and does not panic.
func TestWebhooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := NewWebhooks(reg)
	w.Attempt(WebhookDelivered, 20*time.Millisecond, 30*time.Millisecond)
	w.Attempt(WebhookRetrying, time.Second, 2*time.Second)
	w.Disabled()
	w.Backlog(7, 500, 90*time.Second)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jobsd_webhook_attempts_total", map[string]string{"outcome": WebhookDelivered}, 1},
		{"jobsd_webhook_attempts_total", map[string]string{"outcome": WebhookRetrying}, 1},
		{"jobsd_webhook_attempts_total", map[string]string{"outcome": WebhookFailed}, 0},
		{"jobsd_webhook_endpoints_disabled_total", nil, 1},
		{"jobsd_webhook_deliveries_due", nil, 7},
		{"jobsd_webhook_outbox_jobs", nil, 500},
		{"jobsd_webhook_queue_age_seconds", nil, 90},
	} {
		if got, _ := value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	var none *Webhooks
	none.Attempt(WebhookFailed, 0, 0)
	none.Disabled()
	none.Backlog(1, 2, time.Second)
}
