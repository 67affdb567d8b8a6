package delivery_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/timestamp"
)

// TestAppendEventIsJSONMarshal: the event body built by hand is, byte for
// byte, what json.Marshal made of the event struct it replaced (signatures
// are over these bytes), for jobs whose JSON holds escapes, HTML
// characters, non-ASCII text and spaced-out results.
func TestAppendEventIsJSONMarshal(t *testing.T) {
	type event struct {
		Type          string          `json:"type"`
		Timestamp     timestamp.Time  `json:"timestamp"`
		Data          json.RawMessage `json:"data"`
		ResultOmitted bool            `json:"resultOmitted,omitempty"`
	}
	ended := time.Date(2026, 3, 4, 12, 0, 5, 123456789, time.UTC)
	errText := "bad <input> & \"quotes\"\n\u2028 été"
	for _, tc := range []struct {
		name      string
		eventType string
		job       job.Job
		omitted   bool
	}{
		{"completed", "job.completed", job.Job{Status: "COMPLETED", Result: []byte(`{"output": "a <b> & c", "n": [1, 2,  3], "s": "\u00e9t\u00e9"}`), CompletedAt: &ended}, false},
		{"failed with an error to escape", "job.failed", job.Job{Status: "FAILED", Error: &errText, CompletedAt: &ended}, false},
		{"result omitted", "job.completed", job.Job{Status: "COMPLETED", CompletedAt: &ended}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.job.ID, tc.job.Type, tc.job.Attempts, tc.job.CreatedAt, tc.job.UpdatedAt = uuid.New(), "AI_PREVIEW", 2, ended.Add(-time.Minute), ended
			data, err := impl.WebhookJSON(&tc.job)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(event{Type: tc.eventType, Timestamp: timestamp.New(ended), Data: data, ResultOmitted: tc.omitted})
			if err != nil {
				t.Fatal(err)
			}
			got, err := delivery.AppendEvent(nil, tc.eventType, timestamp.New(ended), data, tc.omitted)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("event body (-json.Marshal +appendEvent):\n%s", diff)
			}
		})
	}
}
