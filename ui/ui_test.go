package ui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeIssuer serves a discovery document at the edge, as Cognito would.
func fakeIssuer(t *testing.T, mutate func(map[string]any)) string {
	t.Helper()
	var base string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pool/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		d := map[string]any{
			"issuer":                 base,
			"authorization_endpoint": "https://login.example.test/oauth2/authorize",
			"token_endpoint":         "https://login.example.test/oauth2/token",
		}
		if mutate != nil {
			mutate(d)
		}
		_ = json.NewEncoder(w).Encode(d)
	}))
	t.Cleanup(srv.Close)
	base = srv.URL + "/pool"
	return base
}

func newHandler(t *testing.T, issuer string) *Handler {
	t.Helper()
	h, err := New(Config{Issuer: issuer, ClientID: "console", BaseURL: "https://jobs.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestShell: every app path, deep links included, gets the shell with the
// issuer's endpoints and a policy that allows the token endpoint's origin.
func TestShell(t *testing.T) {
	h := newHandler(t, fakeIssuer(t, nil))
	for _, path := range []string{"/ui/", "/ui/jobs", "/ui/jobs/0190c2a4-5b7e-7c3d-9f00-1a2b3c4d5e6f", "/ui/callback?code=x&state=y", "/ui/nothing"} {
		w := get(h, http.MethodGet, path)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		body := w.Body.String()
		for _, want := range []string{
			`content="https://login.example.test/oauth2/token"`,
			`content="https://jobs.example.test/ui/callback"`,
			`<script type="module" src="/ui/assets/js/app.js"></script>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: shell lacks %s", path, want)
			}
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "connect-src 'self' https://login.example.test;") || !strings.Contains(csp, "script-src 'self';") ||
			strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		for k, v := range map[string]string{
			"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
			"X-Content-Type-Options": "nosniff", "Strict-Transport-Security": "max-age=31536000",
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// TestNoInlineScript: the shell carries no inline script or style, which
// the policy would block.
func TestNoInlineScript(t *testing.T) {
	body := get(newHandler(t, fakeIssuer(t, nil)), http.MethodGet, "/ui/").Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "<style") || strings.Contains(body, "style=") ||
		strings.Contains(body, "onclick=") || strings.Contains(body, "onload=") {
		t.Errorf("inline script or style in the shell:\n%s", body)
	}
}

func TestAssets(t *testing.T) {
	h := newHandler(t, fakeIssuer(t, nil))
	w := get(h, http.MethodGet, "/ui/assets/js/app.js")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("app.js: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	etag := w.Header().Get("ETag")
	if w2 := get(h, http.MethodGet, "/ui/assets/js/app.js", "If-None-Match", etag); w2.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d", w2.Code)
	}
	if w := get(h, http.MethodGet, "/ui/assets/app.css"); !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("app.css: %q", w.Header().Get("Content-Type"))
	}
	for _, p := range []string{"/ui/assets/nope.js", "/ui/assets/index.html", "/ui/assets/../ui.go"} {
		if w := get(h, http.MethodGet, p); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
}

func TestMethodsAndRedirect(t *testing.T) {
	h := newHandler(t, fakeIssuer(t, nil))
	if w := get(h, http.MethodPost, "/ui/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	if w := get(h, http.MethodGet, "/ui"); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/ui/" {
		t.Errorf("/ui: %d %q", w.Code, w.Header().Get("Location"))
	}
}

// TestDiscoveryRefused: a document that names another issuer, or offers no
// S256, is not used; the console says it cannot sign in, without a 500.
func TestDiscoveryRefused(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(map[string]any)
	}{
		{name: "other issuer", mutate: func(d map[string]any) { d["issuer"] = "https://evil.test/pool" }},
		{name: "no S256", mutate: func(d map[string]any) { d["code_challenge_methods_supported"] = []string{"plain"} }},
		{name: "relative token endpoint", mutate: func(d map[string]any) { d["token_endpoint"] = "/oauth2/token" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(newHandler(t, fakeIssuer(t, tt.mutate)), http.MethodGet, "/ui/")
			body, _ := io.ReadAll(w.Body)
			if w.Code != http.StatusServiceUnavailable || strings.Contains(string(body), "<script") {
				t.Errorf("got %d %s", w.Code, body)
			}
		})
	}
}

func TestCheckBaseURL(t *testing.T) {
	for _, ok := range []string{"https://jobs.example.com", "http://127.0.0.1:8080", "https://jobs.example.com/"} {
		if err := CheckBaseURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "jobs.example.com", "ftp://x", "https://jobs.example.com/console", "https://x?y=1", "https://u:p@x"} {
		if CheckBaseURL(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
