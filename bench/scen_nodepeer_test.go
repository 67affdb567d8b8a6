package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	checkJobID = "0190f1f4-8a6b-7cde-9f01-23456789abcd"
	checkOwner = "tok-owner"
	checkOther = "tok-other"
)

// fakeJobsd answers GET /api/jobs/{id} as jobsd's contract says, for one
// job of checkOwner's; change alters one answer, for the peers that differ.
func fakeJobsd(change func(w http.ResponseWriter, r *http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if change != nil && change(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		id := strings.TrimPrefix(r.URL.Path, "/api/jobs/")
		switch {
		case token != checkOwner && token != checkOther:
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"Missing or invalid Bearer token"}`))
		case len(id) != 36:
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"Invalid UUID format"}`))
		case id != checkJobID || token != checkOwner:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"Job not found or does not belong to the requesting user"}`))
		case r.Header.Get("If-None-Match") == `"v3"`:
			w.Header().Set("ETag", `"v3"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("ETag", `"v3"`)
			w.Write([]byte(`{"id":"` + checkJobID + `","type":"AI_PREVIEW","status":"PENDING","result":null,"error":null,` +
				`"attempts":0,"createdAt":"2026-12-07T12:00:00.000Z","startedAt":null,"completedAt":null,"updatedAt":"2026-12-07T12:00:00.000Z"}` + "\n"))
		}
	})
}

// TestCheckNodePeer: the check passes a peer that answers as jobsd does
// (other spacing included) and fails each that differs in a
// status or a field.
func TestCheckNodePeer(t *testing.T) {
	jobsd := httptest.NewServer(fakeJobsd(nil))
	defer jobsd.Close()
	for _, tc := range []struct {
		name    string
		change  func(w http.ResponseWriter, r *http.Request) bool
		wantErr string // "" for a peer that passes
	}{
		{name: "the same answers"},
		{name: "the same JSON, other spacing", change: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") != "" {
				return false
			}
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{ "error" : "Missing or invalid Bearer token" }`))
			return true
		}},
		{name: "another user's job answered", wantErr: `check "another user's job"`, change: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") != "Bearer "+checkOther {
				return false
			}
			r.Header.Set("Authorization", "Bearer "+checkOwner)
			return false
		}},
		{name: "a field differs", wantErr: "bodies differ", change: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") != "Bearer "+checkOwner || r.Header.Get("If-None-Match") != "" || !strings.HasSuffix(r.URL.Path, checkJobID) {
				return false
			}
			w.Write([]byte(`{"id":"` + checkJobID + `","type":"AI_PREVIEW","status":"PENDING","result":null,"error":null,` +
				`"attempts":0,"createdAt":"2026-12-07T12:00:00Z","startedAt":null,"completedAt":null,"updatedAt":"2026-12-07T12:00:00.000Z"}`))
			return true
		}},
		{name: "no 304", wantErr: `check "own job, If-None-Match its ETag"`, change: func(w http.ResponseWriter, r *http.Request) bool {
			r.Header.Del("If-None-Match")
			return false
		}},
		{name: "no token accepted", wantErr: `check "no token"`, change: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") == "" {
				r.Header.Set("Authorization", "Bearer "+checkOwner)
			}
			return false
		}},
		{name: "a malformed id is a 404", wantErr: `check "malformed id"`, change: func(w http.ResponseWriter, r *http.Request) bool {
			if len(strings.TrimPrefix(r.URL.Path, "/api/jobs/")) == 36 {
				return false
			}
			w.WriteHeader(http.StatusNotFound)
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := httptest.NewServer(fakeJobsd(tc.change))
			defer peer.Close()
			err := checkNodePeer(peer.URL, jobsd.URL, poll{id: checkJobID, token: checkOwner}, checkOther)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check failed a peer that answers as jobsd: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("check passed a peer that differs (want an error with %q)", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestNodePeerWithoutNode: without node on PATH the peer's goal is NOT
// MEASURED and says why; it is never a figure.
func TestNodePeerWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	res := &PollGoalsResult{UnfinishedConc: []int{1, 16}, Runs: map[string][]LoadResult{},
		NodePeer: prepareNodePeer(t.Context(), 20)}
	res.summarize()
	gs := res.nodePeerGoals()
	if len(gs) != 1 || !strings.Contains(gs[0].NotMeasured, "node is not on PATH") || gs[0].Met {
		t.Fatalf("goals without node: %+v, want one NOT MEASURED saying node is not on PATH", gs)
	}
}

// TestNodePeerGoals: the ratios are taken per repeat (jobsd's cell against
// the peer's of the same repeat), then the median, and each is held to its
// own target.
func TestNodePeerGoals(t *testing.T) {
	res := &PollGoalsResult{UnfinishedConc: []int{16}, NodePeer: &NodePeerResult{dir: "installed"}, Runs: map[string][]LoadResult{
		"unfinished16": {{PerSec: 9000, P99ms: 3}, {PerSec: 12000, P99ms: 4}},
		"node16":       {{PerSec: 3000, P99ms: 30}, {PerSec: 3000, P99ms: 8, Errors: 2, Requests: 6000}},
	}}
	res.summarize()
	gs := res.nodePeerGoals()
	if len(gs) != 2 {
		t.Fatalf("%d goals, want 2 (rate and p99 at c=16)", len(gs))
	}
	for i, want := range []struct {
		measured float64
		met      bool
	}{{3.5, true}, {0.3, false}} { // rates 3 and 4; p99s 0.1 and 0.5
		g := gs[i]
		if g.NotMeasured != "" || g.Measured < want.measured-1e-9 || g.Measured > want.measured+1e-9 || g.Met != want.met {
			t.Errorf("goal %q: measured %v met %v (%q), want %v met %v", g.Name, g.Measured, g.Met, g.NotMeasured, want.measured, want.met)
		}
		if !strings.Contains(g.Note, "the Node peer failed 2 of") {
			t.Errorf("goal %q: note %q does not count the peer's failed polls", g.Name, g.Note)
		}
	}
}
