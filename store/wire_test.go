package store_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// wireProxy forwards TCP connections to PostgreSQL and counts the bytes the
// server sends back: exactly what the driver receives, protocol framing
// included. A store opened on its URL is measured without touching the
// driver.
type wireProxy struct {
	upstream string
	ln       net.Listener
	received atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

// newWireProxy starts a proxy in front of the database at dbURL and returns
// the URL to connect through it. It stops when the test ends.
func newWireProxy(tb testing.TB, dbURL string) (string, *wireProxy) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &wireProxy{upstream: u.Host, ln: ln}
	go p.serve()
	tb.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return u.String(), p
}

func (p *wireProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() {
			io.Copy(s, c)
			s.Close()
		}()
		go func() {
			io.Copy(countingWriter{c, &p.received}, s)
			c.Close()
		}()
	}
}

func (p *wireProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// during returns the bytes the server sent while op ran. They are counted
// before they are passed on, so everything op read is in the count; nothing
// else runs on the store's connections meanwhile.
func (p *wireProxy) during(op func()) int64 {
	before := p.received.Load()
	op()
	return p.received.Load() - before
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	w.n.Add(int64(len(b)))
	return w.w.Write(b)
}

// parseInput is a PARSE_DOCUMENT input at the documented limit: a 5 MiB plain
// text document, base64-encoded (about 7 MB of JSON).
func parseInput() []byte {
	var doc strings.Builder
	for i := 0; doc.Len() < 5<<20; i++ {
		fmt.Fprintf(&doc, "Paragraph %d. Maize prices are volatile and roads flood in April.\n", i)
	}
	in, _ := json.Marshal(map[string]string{
		"contentType": "text/plain",
		"document":    base64.StdEncoding.EncodeToString([]byte(doc.String())[:5<<20]),
	})
	return in
}

// bigResult is a PARSE_DOCUMENT-shaped result of about n bytes of JSON. With
// random true its text is random hex, which PostgreSQL cannot compress, so its
// stored size is its size; else it is repeated prose, which compresses well.
func bigResult(n int, random bool) string {
	text := make([]byte, 0, n)
	r := rand.New(rand.NewPCG(1, 2))
	for len(text) < n-200 {
		if random {
			text = fmt.Appendf(text, "%016x", r.Uint64())
		} else {
			text = append(text, "Maize prices are volatile and roads flood in April. "...)
		}
	}
	out, _ := json.Marshal(map[string]any{
		"contentType": "text/plain",
		"sections":    []map[string]string{{"heading": "All", "text": string(text)}},
		"counts":      map[string]int{"sections": 1},
	})
	return string(out)
}

// copyJob inserts n copies of job id for user (new ids, the same columns),
// server-side, so that seeding sends no large values.
func copyJob(tb testing.TB, st *store.Store, id uuid.UUID, user string, n int) {
	tb.Helper()
	_, err := st.DB().Exec(`
		INSERT INTO jobs (id, user_id, type, status, input, result, result_bytes, attempts, max_attempts, started_at, completed_at)
		SELECT gen_random_uuid(), $2, type, status, input, result, result_bytes, attempts, max_attempts, started_at, completed_at
		FROM jobs, generate_series(1, $3) WHERE id = $1`, id, user, n)
	if err != nil {
		tb.Fatal(err)
	}
}

// TestReadsSkipInput: creating, polling, listing and cancelling jobs with a
// 5 MiB document receive a few kB each, not the input.
func TestReadsSkipInput(t *testing.T) {
	ctx := t.Context()
	proxyURL, p := newWireProxy(t, pgtest.NewDatabase(t))
	st, err := store.Open(ctx, proxyURL, store.Options{MaxOpenConns: 1, ReadBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	input := parseInput()
	var j *job.Job
	sizes := map[string]int64{}
	sizes["Create"] = p.during(func() {
		if j, _, err = st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeParseDocument, Input: input}); err != nil {
			t.Fatal(err)
		}
	})
	copyJob(t, st, j.ID, "alice", 9)
	sizes["Get"] = p.during(func() {
		if _, err := st.Get(ctx, store.OwnedBy("alice"), j.ID); err != nil {
			t.Fatal(err)
		}
	})
	sizes["List of 10"] = p.during(func() {
		if jobs, _, err := st.List(ctx, store.OwnedBy("alice"), store.ListFilter{Limit: 100}); err != nil || len(jobs) != 10 {
			t.Fatalf("list: %d jobs, %v", len(jobs), err)
		}
	})
	sizes["Cancel"] = p.during(func() {
		if _, res, err := st.Cancel(ctx, store.OwnedBy("alice"), j.ID); err != nil || res != store.Cancelled {
			t.Fatalf("cancel: %v, %v", res, err)
		}
	})
	for _, op := range slices.Sorted(maps.Keys(sizes)) {
		if n := sizes[op]; n > 64<<10 {
			t.Errorf("%s received %d bytes for jobs with a %d-byte input", op, n, len(input))
		}
	}
}

// BenchmarkWireBytes measures what one Create, Get, List and Cancel make the
// driver receive, through a counting TCP proxy (ns/op is not the point: the
// machine's disk and the proxy are in it):
//
//	go test -run '^$' -bench WireBytes -benchtime 5x ./store/
//
// alice has 100 PENDING PARSE_DOCUMENT jobs with a 5 MiB document each; bob
// and carol have 100 COMPLETED jobs each with a 4 MiB result, random (stored
// uncompressed) for bob, repetitive (stored compressed) for carol, both
// with the result_bytes a worker writes; dave has carol's results as rows
// completed before result_bytes existed (NULL), whose pages the database
// cuts by stored size only.
func BenchmarkWireBytes(b *testing.B) {
	ctx := b.Context()
	dbURL := pgtest.NewDatabase(b)
	proxyURL, p := newWireProxy(b, dbURL)
	st, err := store.Open(ctx, proxyURL, store.Options{MaxOpenConns: 1, ReadBatches: 1, QueryTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	input := parseInput()
	created, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeParseDocument, Input: input})
	if err != nil {
		b.Fatal(err)
	}
	first := created.ID
	copyJob(b, st, first, "alice", 99)
	for user, random := range map[string]bool{"bob": true, "carol": false, "dave": false} {
		var id uuid.UUID
		err := st.DB().Get(&id, `
			INSERT INTO jobs (id, user_id, type, status, input, result, result_bytes, attempts, started_at, completed_at)
			VALUES (gen_random_uuid(), $1, 'PARSE_DOCUMENT', 'COMPLETED', '{}', CAST($2 AS jsonb),
				CASE WHEN $1 <> 'dave' THEN octet_length(CAST($2 AS text)) END, 1, now(), now())
			RETURNING id`, user, bigResult(4<<20, random))
		if err != nil {
			b.Fatal(err)
		}
		copyJob(b, st, id, user, 99)
	}
	if _, err := st.DB().Exec(`VACUUM ANALYZE jobs`); err != nil {
		b.Fatal(err)
	}

	b.Run("Create", func(b *testing.B) {
		var n int64
		for b.Loop() {
			n += p.during(func() {
				if _, _, err := st.Create(ctx, store.NewJob{UserID: "dave", Type: job.TypeParseDocument, Input: input}); err != nil {
					b.Fatal(err)
				}
			})
		}
		b.ReportMetric(float64(n)/float64(b.N), "wire-B/op")
	})
	b.Run("Get", func(b *testing.B) {
		var n int64
		for b.Loop() {
			n += p.during(func() {
				if _, err := st.Get(ctx, store.OwnedBy("alice"), first); err != nil {
					b.Fatal(err)
				}
			})
		}
		b.ReportMetric(float64(n)/float64(b.N), "wire-B/op")
	})
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		b.Run("List100/"+user, func(b *testing.B) {
			var n int64
			var rows int
			for b.Loop() {
				n += p.during(func() {
					jobs, _, err := st.List(ctx, store.OwnedBy(user), store.ListFilter{Limit: 100})
					if err != nil {
						b.Fatal(err)
					}
					rows = len(jobs)
				})
			}
			b.ReportMetric(float64(n)/float64(b.N), "wire-B/op")
			b.ReportMetric(float64(rows), "jobs/page")
		})
	}
	b.Run("Cancel", func(b *testing.B) {
		var n int64
		for b.Loop() {
			b.StopTimer()
			var id uuid.UUID
			if err := st.DB().Get(&id, `
				INSERT INTO jobs (id, user_id, type, input) SELECT gen_random_uuid(), user_id, type, input
				FROM jobs WHERE id = $1 RETURNING id`, first); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			n += p.during(func() {
				if _, res, err := st.Cancel(ctx, store.OwnedBy("alice"), id); err != nil || res != store.Cancelled {
					b.Fatal(errors.Join(err, fmt.Errorf("cancel: result %v", res)))
				}
			})
		}
		b.ReportMetric(float64(n)/float64(b.N), "wire-B/op")
	})
}
