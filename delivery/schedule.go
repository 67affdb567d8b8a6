package delivery

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// DefaultSchedule is the wait before each retry of a failed delivery: 11
// retries after the first attempt, about 2.9 days in all, then the
// delivery is FAILED. JOBS_WEBHOOK_RETRY_SCHEDULE replaces it.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 24 * time.Hour,
}

// DefaultScheduleText is DefaultSchedule as JOBS_WEBHOOK_RETRY_SCHEDULE
// spells it.
const DefaultScheduleText = "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h,24h"

// ParseSchedule reads a comma-separated list of Go durations.
func ParseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry schedule %q: %q is not a positive duration such as 5s or 2h", s, part)
		}
		out = append(out, d)
	}
	return out, nil
}

// Jitter is the spread of each retry's wait: ±20%, so that the deliveries
// that failed together (an endpoint down) do not all retry at one instant.
const Jitter = 0.2

// retryAfter is the wait before the retry that follows attempt number
// attempts (1 for the first), or 0 when the schedule has run out.
func retryAfter(schedule []time.Duration, attempts int) time.Duration {
	if attempts < 1 || attempts > len(schedule) {
		return 0
	}
	d := schedule[attempts-1]
	f := 1 + Jitter*(2*rand.Float64()-1)
	return max(time.Duration(float64(d)*f), time.Millisecond)
}
