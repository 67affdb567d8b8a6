package impl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/jobsd/jobsd/impl"
)

var (
	fuzzOnce   sync.Once
	fuzzRouter routers.Router
)

// specRouter routes requests to openapi.yaml's operations, for validating
// responses.
func specRouter(tb testing.TB) routers.Router {
	fuzzOnce.Do(func() {
		doc, err := impl.Spec()
		if err != nil {
			tb.Fatal(err)
		}
		if fuzzRouter, err = gorillamux.NewRouter(doc); err != nil {
			tb.Fatal(err)
		}
	})
	return fuzzRouter
}

// FuzzServer sends arbitrary requests through the whole server: whatever the
// method, path, query, headers and body, the answer is never a 5xx other
// than the documented 503, never a panic, every error has the documented
// shape, and every answer of a route in openapi.yaml validates against it.
func FuzzServer(f *testing.F) {
	b := setupPoll(f)
	pending := b.job(f, "PENDING")
	seeds := []struct {
		method, target, auth, ctype, extra string
		body                               []byte
	}{
		{"GET", "/api/jobs/" + pending, "valid", "", "", nil},
		{"GET", "/api/jobs/" + pending + "?waitSeconds=0", "valid", "", "If-None-Match: *", nil},
		{"GET", "/api/jobs/%7B" + pending + "%7D", "valid", "", "", nil},
		{"GET", "/api/jobs/urn:uuid:" + pending, "valid", "", "", nil},
		{"GET", "/api/jobs?limit=101&cursor=%00", "valid", "", "", nil},
		{"GET", "/api/jobs?status=DONE&type=x", "valid", "", "", nil},
		{"POST", "/api/admin/prompts/preview", "valid", "application/json", "Idempotency-Key: k 1", []byte(`{"prompt":"x"}`)},
		{"POST", "/api/admin/prompts/preview", "valid", "application/json", "", []byte(`{"prompt":"x","variables":{"a":1}}`)},
		{"POST", "/api/jobs", "valid", "application/json", "Idempotency-Key: abc", []byte(`{"type":"GAP_DETECTION","input":{"text":"a","requirements":["r"]}}`)},
		{"POST", "/api/jobs", "valid", "application/json", "", []byte(`{"type":"PARSE_DOCUMENT","input":{"document":"%%%","contentType":"text/plain"}}`)},
		{"POST", "/api/jobs", "valid", "application/json; charset=utf-8", "", []byte(`{"type":"REPORT_GENERATION","input":{"title":"t","jobIds":["x"]}}`)},
		{"POST", "/api/jobs", "valid", "text/plain", "", []byte(`hello`)},
		{"POST", "/api/jobs/" + pending + "/cancel", "valid", "", "", nil},
		{"GET", "/api/jobs/" + pending + "/events", "garbage", "", "Last-Event-ID: x", nil},
		{"DELETE", "/api/jobs", "valid", "", "", nil},
		{"GET", "/api/jobs", "none", "", "", nil},
		{"GET", "/readyz", "none", "", "", nil},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.auth, s.ctype, s.extra, s.body)
	}
	f.Fuzz(func(t *testing.T, method, target, authKind, ctype, extra string, body []byte) {
		if strings.HasSuffix(strings.SplitN(target, "?", 2)[0], "/events") {
			return // streams are long-lived; conformance covers them
		}
		req, err := http.NewRequest(method, "http://jobsd.test"+target, bytes.NewReader(body))
		if err != nil || !strings.HasPrefix(req.URL.Path, "/") {
			return // not a request a client can send
		}
		switch authKind {
		case "valid":
			req.Header.Set("Authorization", "Bearer "+b.token)
		case "none":
		default:
			req.Header.Set("Authorization", authKind)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if name, value, ok := strings.Cut(extra, ":"); ok && validHeader(name, value) {
			req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		rec := httptest.NewRecorder()
		b.e.ServeHTTP(rec, req)
		checkFuzzResponse(t, req, rec, body)
	})
}

func validHeader(name, value string) bool {
	if name = strings.TrimSpace(name); name == "" || strings.EqualFold(name, "Authorization") {
		return false
	}
	for _, c := range name + value {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	for _, c := range name {
		if strings.ContainsRune(" \t()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func checkFuzzResponse(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder, reqBody []byte) {
	t.Helper()
	code := rec.Code
	if code >= 500 && code != http.StatusServiceUnavailable {
		t.Fatalf("%s %q -> %d: %s", req.Method, req.URL.RequestURI(), code, rec.Body)
	}
	if code >= 400 && req.Method != http.MethodHead {
		var e map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 1 || e["error"] == "" {
			t.Fatalf("%s %q -> %d with a body not in the error shape: %q", req.Method, req.URL.RequestURI(), code, rec.Body)
		}
	}
	route, params, err := specRouter(t).FindRoute(req)
	if err != nil || code == http.StatusNotModified {
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Fatalf("%s %q -> %d does not match openapi.yaml: %v\n%s", req.Method, req.URL.RequestURI(), code, err, rec.Body)
	}
}
