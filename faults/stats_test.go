package faults

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Recording responses, and their problems and latencies by time window.

type recorder struct {
	mu      sync.Mutex
	results []result
}

func (rc *recorder) add(r result) {
	rc.mu.Lock()
	rc.results = append(rc.results, r)
	rc.mu.Unlock()
}

func (rc *recorder) all() []result {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.results)
}

// problems lists (up to 10) and counts responses with a problem.
func problems(rs []result) (n int, first []string) {
	for _, r := range rs {
		if p := r.problem(); p != "" {
			n++
			if len(first) < 10 {
				first = append(first, p)
			}
		}
	}
	return n, first
}

// window selects the results that started in [from, to).
func window(rs []result, from, to time.Time, keep func(result) bool) []result {
	var out []result
	for _, r := range rs {
		if !r.start.Before(from) && r.start.Before(to) && (keep == nil || keep(r)) {
			out = append(out, r)
		}
	}
	return out
}

func isPoll(r result) bool {
	return r.method == http.MethodGet && strings.HasPrefix(r.path, "/api/jobs/") && !strings.Contains(r.path, "waitSeconds")
}

type stats struct {
	n                  int
	p50, p90, p99, max time.Duration
	byStatus           map[int]int
	errors             int
}

func summarize(rs []result) stats {
	s := stats{n: len(rs), byStatus: map[int]int{}}
	d := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		d = append(d, r.dur)
		if r.err != nil {
			s.errors++
		} else {
			s.byStatus[r.status]++
		}
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	s.p50, s.p90, s.p99 = pct(0.50), pct(0.90), pct(0.99)
	if len(d) > 0 {
		s.max = d[len(d)-1]
	}
	return s
}

func (s stats) String() string {
	r := func(d time.Duration) string {
		if d < 10*time.Millisecond {
			return d.Round(10 * time.Microsecond).String()
		}
		return d.Round(time.Millisecond).String()
	}
	codes := make([]int, 0, len(s.byStatus))
	for c := range s.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var st []string
	for _, c := range codes {
		st = append(st, fmt.Sprintf("%d×%d", s.byStatus[c], c))
	}
	if s.errors > 0 {
		st = append(st, fmt.Sprintf("%d×transport-error", s.errors))
	}
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s max=%s [%s]", s.n, r(s.p50), r(s.p90), r(s.p99), r(s.max), strings.Join(st, " "))
}
