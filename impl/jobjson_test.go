package impl

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/timestamp"
)

// viaEncodingJSON is what the generated 200 response writes for j.
func viaEncodingJSON(t testing.TB, j gen.Job) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(j); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkEncodeJob(t testing.TB, j gen.Job) {
	t.Helper()
	got, err := encodeJob(j)
	if err != nil {
		t.Fatalf("encodeJob: %v", err)
	}
	if want := viaEncodingJSON(t, j); !bytes.Equal(got, want) {
		t.Fatalf("encodeJob differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

// Strings and results chosen for every escape encoding/json makes.
var (
	awkwardStrings = []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnewline\nreturn\r",
		"\x00\x01\x1f\x7f", "bell \b form \f", "ünïcödé ✓ 日本", "line sep \u2028 para \u2029", "bad utf8 \xff\xfe",
		"Bedrock API error: ThrottlingException - Rate exceeded"}
	awkwardResults = []string{`{}`, `{"output": "done"}`, `{"output":"<b>&</b>"}`, "{\n  \"a\" : [1, 2.5e3, true, null] }",
		`{"s": "\u2028 \\ \" \n"}`, `{"nested": {"k": ["x", {"y": "z"}]}}`, `{"u": "ünï ✓"}`, "{\"sep\": \"\u2028\"}"}
)

// TestEncodeJobMatchesEncodingJSON: the hand-written encoder gives the bytes
// encoding/json gives, for every status shape and awkward content.
func TestEncodeJobMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ts := func() *timestamp.Time {
		v := timestamp.New(time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("", r.IntN(50000)-25000)))
		return &v
	}
	for i := range 5000 {
		j := gen.Job{Id: uuid.New(), Type: gen.JobType([]string{"AI_PREVIEW", "PARSE_DOCUMENT", "RISK_ANALYSIS"}[i%3]),
			Status: gen.JobStatus([]string{"PENDING", "PROCESSING", "COMPLETED", "FAILED"}[i%4]), Attempts: r.IntN(26),
			CreatedAt: *ts(), UpdatedAt: *ts()}
		if r.IntN(2) == 0 {
			j.StartedAt = ts()
		}
		if r.IntN(2) == 0 {
			j.CompletedAt = ts()
		}
		if r.IntN(2) == 0 {
			raw := json.RawMessage(awkwardResults[r.IntN(len(awkwardResults))])
			j.Result = &raw
		}
		if r.IntN(2) == 0 {
			j.Error = &awkwardStrings[r.IntN(len(awkwardStrings))]
		}
		if r.IntN(10) == 0 {
			j.Type = gen.JobType(awkwardStrings[r.IntN(len(awkwardStrings))])
		}
		checkEncodeJob(t, j)
	}
}

// FuzzEncodeJob compares the two encoders on arbitrary text fields.
func FuzzEncodeJob(f *testing.F) {
	for i, s := range awkwardStrings {
		f.Add(s, awkwardResults[i%len(awkwardResults)], int64(i)*1e15)
	}
	f.Fuzz(func(t *testing.T, text, result string, nanos int64) {
		at := timestamp.New(time.Unix(0, nanos))
		j := gen.Job{Id: uuid.New(), Type: gen.JobType(text), Status: gen.COMPLETED, Error: &text, CreatedAt: at, UpdatedAt: at, StartedAt: &at}
		if json.Valid([]byte(result)) {
			raw := json.RawMessage(result)
			j.Result = &raw
		}
		want, wantErr := json.Marshal(j)
		got, err := encodeJob(j)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("encodeJob error %v, encoding/json error %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// TestEncodedJobHeaders: the pre-encoded answer writes the generated
// response's headers and body, with and without Retry-After.
func TestEncodedJobHeaders(t *testing.T) {
	j := gen.Job{Id: uuid.New(), Type: gen.JobTypeAIPREVIEW, Status: gen.PENDING}
	body, err := encodeJob(j)
	if err != nil {
		t.Fatal(err)
	}
	for _, finished := range []bool{false, true} {
		cc, etag := cacheControl, `"v7"`
		want := server.GetJob200JSONResponse{Body: j, Headers: server.GetJob200ResponseHeaders{CacheControl: &cc, ETag: &etag}}
		if !finished {
			r := RetryAfterSeconds
			want.Headers.RetryAfter = &r
		}
		a, b := httptest.NewRecorder(), httptest.NewRecorder()
		if err := want.VisitGetJobResponse(a); err != nil {
			t.Fatal(err)
		}
		if err := (encodedJob{body: body, etag: etag, retry: !finished}).VisitGetJobResponse(b); err != nil {
			t.Fatal(err)
		}
		if a.Code != b.Code || !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) || len(a.Header()) != len(b.Header()) {
			t.Fatalf("finished=%v: generated %d %v %s; encoded %d %v %s", finished, a.Code, a.Header(), a.Body, b.Code, b.Header(), b.Body)
		}
		for k := range a.Header() {
			if a.Header().Get(k) != b.Header().Get(k) {
				t.Errorf("finished=%v: header %s: generated %q, encoded %q", finished, k, a.Header().Get(k), b.Header().Get(k))
			}
		}
	}
}
