package impl_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
)

// TestReadiness: /readyz says 200 only while the process takes requests; it
// names why not otherwise, so that a load balancer stops sending there. (A
// change listener that is down answers "Change listener unavailable"; no
// test drives that yet: lib/pq's Listen waits for a first connection.)
func TestReadiness(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := setupPoll(t)
	up, err := hub.New(b.url, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	draining := make(chan struct{})
	close(draining)

	tests := []struct {
		name     string
		hub      *hub.Hub
		draining chan struct{}
		status   int
		body     string
	}{
		{"ready", up, nil, 200, `{"status":"ok"}`},
		{"draining", up, draining, 503, `{"error":"Shutting down"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: quiet, Hub: tc.hub, Draining: tc.draining})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != tc.status || got != tc.body {
				t.Errorf("GET /readyz = %d %s, want %d %s", rec.Code, got, tc.status, tc.body)
			}
		})
	}
}
