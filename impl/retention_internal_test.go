package impl

import (
	"testing"
	"time"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/timestamp"
)

// TestExpired: the finished-job cache stops serving a job at its
// retention; without a retention it serves it for ever.
func TestExpired(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	job := func(age time.Duration) polled {
		return polled{job: gen.Job{Status: gen.COMPLETED, CreatedAt: timestamp.New(now.Add(-age))}}
	}
	tests := []struct {
		name      string
		retention time.Duration
		age       time.Duration
		want      bool
	}{
		{"young", time.Hour, time.Hour - time.Millisecond, false},
		{"at its retention", time.Hour, time.Hour, true},
		{"older", time.Hour, 2 * time.Hour, true},
		{"kept for ever", 0, 10000 * time.Hour, false},
	}
	for _, tc := range tests {
		s := &Server{retention: tc.retention}
		if got := s.expired(job(tc.age), now); got != tc.want {
			t.Errorf("%s: expired = %v, want %v", tc.name, got, tc.want)
		}
	}
}
