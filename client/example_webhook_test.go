package client_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/webhook"
)

// A webhook receiver: verify the signature on the exact bytes received,
// drop events already handled (the webhook-id is the same on every retry),
// answer 2xx fast and do the work afterwards.
func ExampleParseWebhook() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=" // from CreateWebhook
	var seen sync.Map
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		ev, err := client.ParseWebhook(secret, r.Header, body)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if _, dup := seen.LoadOrStore(ev.ID, true); dup {
			w.WriteHeader(http.StatusNoContent) // delivered before: at least once
			return
		}
		job, err := ev.Job()
		if err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		fmt.Println(ev.Type, job.Status, ev.ResultOmitted)
		w.WriteHeader(http.StatusNoContent)
	})

	// What jobsd sends, for the example.
	srv := httptest.NewServer(receiver)
	defer srv.Close()
	body := []byte(`{"type":"job.completed","timestamp":"2026-03-04T12:00:05.000Z","data":{"id":"550e8400-e29b-41d4-a716-446655440000","type":"AI_PREVIEW","status":"COMPLETED","result":{"output":"ok"},"error":null,"attempts":1,"createdAt":"2026-03-04T12:00:00.000Z","startedAt":"2026-03-04T12:00:01.000Z","completedAt":"2026-03-04T12:00:05.000Z","updatedAt":"2026-03-04T12:00:05.000Z"}}`)
	key, _ := webhook.ParseSecret(secret)
	for range 2 { // a retry: the same webhook-id
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		webhook.SetHeaders(req.Header, [][]byte{key}, "0190a8f3-1a2b-7c3d-8e4f-5a6b7c8d9e0f", time.Now(), body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// job.completed COMPLETED false
	// 204
	// 204
}
