package metrics

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/jobsd/jobsd/internal/pgtest"
)

// processSeries is every series name a jobsd process exports, from a
// registry assembled as serve and worker assemble theirs (in one registry,
// as jobsd dev has, webhook delivery loop included), with each
// histogram's _bucket, _sum and _count.
func processSeries(t *testing.T) map[string]bool {
	t.Helper()
	st, _ := pgtest.NewStore(t)
	reg := NewRegistry()
	RegisterStore(reg, st, quiet)
	RegisterListener(reg, "jobs_changed", func() bool { return true })
	api := NewAPI(reg)
	w := NewWorker(reg)
	NewWebhooks(reg) // serve's and dev's delivery loop

	// Vectors export a series once they have a child: make one of each.
	api.Request("/x", http.MethodGet, "")(http.StatusNoContent)
	w.Attempts("AI_PREVIEW").Ended(OutcomeCompleted, "", time.Second)
	w.Attempts("AI_PREVIEW").Pickup(time.Second)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// seriesIn finds the series names an expression refers to: identifiers
// with one of jobsd's prefixes or the standard collectors'.
var seriesIn = regexp.MustCompile(`\b(?:jobsd|go|process)_[a-z0-9_]+\b`)

// TestDeployReferences parses the alert rules and the Grafana dashboard and
// checks that every series they query is one a jobsd process exports, so a
// renamed metric cannot leave a silent alert or an empty panel behind.
// (promtool, in `make rules-check`, checks the rules' syntax.)
func TestDeployReferences(t *testing.T) {
	names := processSeries(t)

	raw, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
				Annotations      map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	exprs := map[string]string{} // where -> expression
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alerts.yml: rule %q lacks an alert name, expr, severity or summary", r.Alert)
			}
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	if len(exprs) == 0 {
		t.Fatal("alerts.yml has no rules")
	}

	raw, err = os.ReadFile("../deploy/grafana/jobsd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("jobsd.json: %v", err)
	}
	panels := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = title
			}
			if e, ok := v["expr"].(string); ok {
				exprs["panel "+where+": "+e] = e
				panels++
			}
			for _, c := range v {
				walk(where, c)
			}
		case []any:
			for _, c := range v {
				walk(where, c)
			}
		}
	}
	walk("dashboard", dash)
	if panels < 10 {
		t.Errorf("the dashboard has %d queries; expected the documented panels", panels)
	}

	used := map[string]bool{}
	for where, e := range exprs {
		found := seriesIn.FindAllString(e, -1)
		if len(found) == 0 {
			t.Errorf("%s: no jobsd series in %q", where, e)
		}
		for _, n := range found {
			used[n] = true
			if !names[n] {
				t.Errorf("%s: %s is not a series jobsd exports", where, n)
			}
		}
	}
	// The headline series of the issue are all on the dashboard.
	for _, n := range []string{
		"jobsd_http_requests_total", "jobsd_http_request_duration_seconds_bucket", "jobsd_jobs",
		"jobsd_oldest_pending_age_seconds", "jobsd_attempts_total", "jobsd_rescues_total", "go_sql_in_use_connections",
	} {
		if !used[n] {
			t.Errorf("nothing queries %s", n)
		}
	}
	var unused []string
	for n := range names {
		if strings.HasPrefix(n, "jobsd_") && !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			if _, isHist := names[n+"_bucket"]; !isHist {
				unused = append(unused, n)
			}
		}
	}
	slices.Sort(unused)
	t.Logf("jobsd series neither charted nor alerted on: %v", unused)
}
