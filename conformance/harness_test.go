package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/jobsd/jobsd/gen/apiclient"
	"github.com/jobsd/jobsd/internal/uuidform"
)

// specPath is the contract, read from the repository rather than from the
// binary, so that black-box runs judge a deployment by the file.
const specPath = "../openapi.yaml"

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		// The contract's UUID form, the server's own check (kin-openapi
		// checks no format by default).
		openapi3.DefineStringFormatValidator("uuid", openapi3.NewCallbackValidator(uuidform.Check))
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
		specDoc, specErr = openapi3.NewLoader().LoadFromFile(specPath)
		if specErr != nil {
			return
		}
		specDoc.Servers = nil
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("load %s: %v", specPath, specErr)
	}
	return specDoc, specRouter
}

// checkResponse validates one response against openapi.yaml: status,
// headers and body schema for routes in the spec; for anything else at
// least the documented error shape.
func checkResponse(t *testing.T, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	_, router := loadSpec(t)
	if resp.StatusCode >= 400 {
		checkErrorShape(t, resp, body)
	}
	if resp.StatusCode == http.StatusNotModified || req.Method == http.MethodOptions {
		return
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return // not a route of the spec: the error shape above is the promise
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s -> %d does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, err, body)
	}
}

// checkErrorShape: every error is exactly {"error": "<non-empty message>"}.
func checkErrorShape(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if len(body) == 0 {
		t.Errorf("%d error response has an empty body", resp.StatusCode)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%d error response has Content-Type %q", resp.StatusCode, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("%d error body is not JSON: %s", resp.StatusCode, body)
		return
	}
	msg, ok := m["error"].(string)
	if len(m) != 1 || !ok || msg == "" {
		t.Errorf("%d error body is not {\"error\": \"...\"}: %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Request-Id") == "" && !env.blackBox {
		t.Errorf("%d error response has no X-Request-Id", resp.StatusCode)
	}
}

// checkingTransport validates every response the typed client receives.
type checkingTransport struct{ t *testing.T }

func (c checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := roundTripPolitely(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	checkResponse(c.t, req, resp, body)
	return resp, nil
}

// roundTripPolitely sends req and, when a deployment's rate limit answers
// 429, waits its Retry-After and tries again, as a well-behaved client does
// (the limited request was not processed). The 429 itself is checked too.
func roundTripPolitely(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || attempt == 5 || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		resp.Body.Close()
		// Retry-After is a time: the protocol asks the client to wait it out (1 to 3 s here).
		time.Sleep(time.Duration(min(max(wait, 1), 3)) * time.Second)
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// client returns the generated typed client, authenticated as tok ("" for
// none), with every response validated against openapi.yaml.
func client(t *testing.T, tok string) *apiclient.ClientWithResponses {
	t.Helper()
	opts := []apiclient.ClientOption{apiclient.WithHTTPClient(&http.Client{Transport: checkingTransport{t}, Timeout: 30 * time.Second})}
	if tok != "" {
		opts = append(opts, apiclient.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}))
	}
	c, err := apiclient.NewClientWithResponses(env.baseURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends one request with a path given as raw text (already
// percent-encoded as it should travel) and validates the response.
func do(t *testing.T, method, rawPath string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	u, err := url.Parse(env.baseURL + rawPath)
	if err != nil {
		t.Fatalf("parse %q: %v", rawPath, err)
	}
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	c := &http.Client{Transport: checkingTransport{t}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawPath, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// rawGet writes a GET with exactly this request target on a new connection,
// bypassing Go's URL parsing, for ids that a URL parser would refuse. Error
// responses must have the documented shape.
func rawGet(t *testing.T, target, authorization string) (*http.Response, []byte) {
	t.Helper()
	resp, body := rawGetNoShape(t, target, authorization)
	if resp.StatusCode >= 400 {
		checkErrorShape(t, resp, body)
	}
	return resp, body
}

func rawGetNoShape(t *testing.T, target, authorization string) (*http.Response, []byte) {
	t.Helper()
	u, _ := url.Parse(env.baseURL)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: close\r\n"
	if authorization != "" {
		req += "Authorization: " + authorization + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, body
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// errorMessage decodes {"error": "..."}.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error
}
