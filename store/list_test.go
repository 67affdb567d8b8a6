package store_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// listBound is the page bound the list tests set: small, so that results of
// a few kB exercise it.
const listBound = 10_000

// boundStore opens a store with ListMaxBytes = listBound on a fresh
// database, through a counting proxy.
func boundStore(t *testing.T) (*store.Store, *wireProxy) {
	t.Helper()
	proxyURL, p := newWireProxy(t, pgtest.NewDatabase(t))
	st, err := store.Open(t.Context(), proxyURL, store.Options{ListMaxBytes: listBound, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, p
}

// resultOf is a result of n bytes of JSON text (as PostgreSQL returns it,
// jsonb's spacing included). Random hex does not compress, so its stored
// size is about n; repeated prose compresses to a small fraction of n.
func resultOf(t *testing.T, n int, r *rand.Rand, compressible bool) string {
	t.Helper()
	const head, tail = `{"text": "`, `"}`
	var sb strings.Builder
	sb.WriteString(head)
	for sb.Len() < n-len(tail) {
		if compressible {
			sb.WriteString("Roads flood in April. ")
		} else {
			fmt.Fprintf(&sb, "%016x", r.Uint64())
		}
	}
	return sb.String()[:n-len(tail)] + tail
}

// completeWith creates a COMPLETED job of user's with that result.
func completeWith(t *testing.T, st *store.Store, user, result string) uuid.UUID {
	t.Helper()
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: user, Type: job.TypeParseDocument, Input: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Every other job gets the result_bytes a worker writes; the rest are
	// as jobs completed before that column existed.
	if _, err := st.DB().Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1)
		UPDATE jobs SET status = 'COMPLETED', result = CAST($2 AS jsonb),
		result_bytes = CASE WHEN $3 THEN octet_length(CAST($2 AS text)) END,
		started_at = now(), completed_at = now() WHERE id = $1`, j.ID, result, j.ID[15]%2 == 0); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// TestListPageBound: a page ends before the job whose result would take
// its results past the bound, with a cursor; an oversized first job makes
// a page of one; following the cursors lists every job once, in order, with
// pages cut by the limit and by the bound alike. Compressed results (whose
// stored size understates them) are held to the bound too.
func TestListPageBound(t *testing.T) {
	st, _ := boundStore(t)
	r := rand.New(rand.NewPCG(3, 4))
	var want []uuid.UUID // newest first
	sizes := map[uuid.UUID]int{}
	for i, n := range []int{3000, 3000, 3000, 3000, 25_000, 500, 4000, 4000, 100, 6000, 3000, 3000} {
		for _, compressible := range []bool{false, true} {
			res := resultOf(t, n, r, compressible && i%2 == 0)
			id := completeWith(t, st, "alice", res)
			want = append([]uuid.UUID{id}, want...)
			sizes[id] = n
		}
	}
	// A PENDING job (no result) and another user's job.
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	want = append([]uuid.UUID{j.ID}, want...)
	completeWith(t, st, "bob", resultOf(t, 3000, r, false))

	for _, limit := range []int{1, 3, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []uuid.UUID
			f := store.ListFilter{Limit: limit}
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("more than %d pages", len(want))
				}
				jobs, next, err := st.List(t.Context(), store.OwnedBy("alice"), f)
				if err != nil {
					t.Fatal(err)
				}
				if len(jobs) == 0 || len(jobs) > limit {
					t.Fatalf("page %d: %d jobs (limit %d)", pages, len(jobs), limit)
				}
				total := 0
				for _, j := range jobs {
					got = append(got, j.ID)
					total += len(j.Result)
					if len(j.Result) != sizes[j.ID] {
						t.Errorf("job %s: result of %d bytes, want %d", j.ID, len(j.Result), sizes[j.ID])
					}
				}
				if len(jobs) > 1 && total > listBound {
					t.Errorf("page %d: %d jobs with %d bytes of results, bound %d", pages, len(jobs), total, listBound)
				}
				if next == nil {
					break
				}
				// The page stopped at the limit or before the bound, not sooner.
				if following := want[len(got)]; len(jobs) < limit && total+sizes[following] <= listBound {
					t.Errorf("page %d stopped at %d jobs (%d bytes) before a job of %d bytes", pages, len(jobs), total, sizes[following])
				}
				last := jobs[len(jobs)-1]
				if *next != (store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}) {
					t.Errorf("page %d: next cursor %v is not its last job %s", pages, next, last.ID)
				}
				f.After = next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("listed jobs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestListSkipsOversizedResults: a page that stops before a large result
// never reads it; the next page starts with it.
func TestListSkipsOversizedResults(t *testing.T) {
	st, p := boundStore(t)
	r := rand.New(rand.NewPCG(5, 6))
	big := completeWith(t, st, "alice", resultOf(t, 1<<20, r, false))
	small := completeWith(t, st, "alice", resultOf(t, 2000, r, false))
	var jobs []job.Job
	var next *store.Cursor
	n := p.during(func() {
		var err error
		jobs, next, err = st.List(t.Context(), store.OwnedBy("alice"), store.ListFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
	})
	if len(jobs) != 1 || jobs[0].ID != small || next == nil {
		t.Fatalf("first page: %d jobs, next %v; want only %s and a cursor", len(jobs), next, small)
	}
	if n > 64<<10 {
		t.Errorf("the first page received %d bytes; the 1 MiB result was read", n)
	}
	jobs, next, err := st.List(t.Context(), store.OwnedBy("alice"), store.ListFilter{Limit: 10, After: next})
	if err != nil || len(jobs) != 1 || jobs[0].ID != big || next != nil {
		t.Fatalf("second page: %d jobs, next %v, %v; want only %s and no cursor", len(jobs), next, err, big)
	}
}
