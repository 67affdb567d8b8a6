package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// loginSetup runs the dev sign-in on a test server, with the console's
// redirect URI on another origin.
type loginSetup struct {
	srv      *httptest.Server
	base     string // issuer URL
	redirect string
	verifier string
	verify   *Verifier
}

const testConsole = "http://console.test"

func newLoginSetup(t *testing.T) *loginSetup {
	t.Helper()
	s := &loginSetup{redirect: testConsole + "/ui/callback", verifier: strings.Repeat("v", 50)}
	mux := http.NewServeMux()
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	s.base = s.srv.URL + "/dev-issuer"
	iss := NewIssuer(testKey(t, 0), s.base)
	l, err := NewLogin(iss, LoginConfig{ClientID: "console", RedirectURI: s.redirect})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", l.Handler())
	s.verify, err = NewVerifier(Config{Issuer: s.base, ClientIDs: []string{"console"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *loginSetup) authorizeURL(mod func(url.Values)) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {"console"}, "redirect_uri": {s.redirect},
		"state": {"st-1"}, "code_challenge": {challenge(s.verifier)}, "code_challenge_method": {"S256"},
	}
	if mod != nil {
		mod(q)
	}
	return s.base + AuthorizePath + "?" + q.Encode()
}

// noRedirect is a browser-like client that keeps cookies and stops at the
// redirect back to the console.
func noRedirect(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var formRE = `name="form" value="`

// signIn opens the form and submits it; it returns the redirect's query.
func (s *loginSetup) signIn(t *testing.T, c *http.Client, user string, admin bool) url.Values {
	t.Helper()
	resp, err := c.Get(s.authorizeURL(nil))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d %s", resp.StatusCode, page)
	}
	i := strings.Index(string(page), formRE)
	if i < 0 {
		t.Fatalf("no form id in %s", page)
	}
	id := string(page[i+len(formRE):])
	id = id[:strings.IndexByte(id, '"')]
	f := url.Values{"form": {id}, "username": {user}}
	if admin {
		f.Set("admin", "1")
	}
	resp, err = c.PostForm(s.base+AuthorizePath, f)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != s.redirect {
		t.Fatalf("redirected to %s", got)
	}
	return loc.Query()
}

func (s *loginSetup) exchange(t *testing.T, code, verifier, redirect string) (int, map[string]any, http.Header) {
	t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "client_id": {"console"}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}
	req, _ := http.NewRequest(http.MethodPost, s.base+TokenPath, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", testConsole)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body, resp.Header
}

func TestLoginCodeFlow(t *testing.T) {
	s := newLoginSetup(t)
	q := s.signIn(t, noRedirect(t), "<b>ops</b>", true)
	if q.Get("state") != "st-1" || q.Get("code") == "" {
		t.Fatalf("redirect query %v", q)
	}
	status, body, h := s.exchange(t, q.Get("code"), s.verifier, s.redirect)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	if h.Get("Access-Control-Allow-Origin") != testConsole || h.Get("Cache-Control") != "no-store" {
		t.Errorf("token headers: %v", h)
	}
	p, err := s.verify.Verify(context.Background(), body["access_token"].(string))
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if p.Subject != "<b>ops</b>" || !p.Admin {
		t.Errorf("principal %+v", p)
	}
	// The code is single-use.
	if status, body, _ := s.exchange(t, q.Get("code"), s.verifier, s.redirect); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("second exchange: %d %v", status, body)
	}
}

func TestLoginNonAdmin(t *testing.T) {
	s := newLoginSetup(t)
	q := s.signIn(t, noRedirect(t), "bob", false)
	_, body, _ := s.exchange(t, q.Get("code"), s.verifier, s.redirect)
	p, err := s.verify.Verify(context.Background(), body["access_token"].(string))
	if err != nil || p.Admin {
		t.Errorf("bob: %+v %v", p, err)
	}
}

func TestLoginTokenRefusals(t *testing.T) {
	tests := []struct {
		name     string
		verifier string
		redirect string
	}{
		{name: "wrong verifier", verifier: strings.Repeat("w", 50), redirect: testConsole + "/ui/callback"},
		{name: "plain verifier equal to the challenge", verifier: "", redirect: testConsole + "/ui/callback"},
		{name: "redirect_uri differs", verifier: strings.Repeat("v", 50), redirect: testConsole + "/ui/callback/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newLoginSetup(t)
			q := s.signIn(t, noRedirect(t), "alice", true)
			v := tt.verifier
			if v == "" {
				v = challenge(s.verifier) // the "plain" method must not work
			}
			status, body, _ := s.exchange(t, q.Get("code"), v, tt.redirect)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Errorf("got %d %v", status, body)
			}
			// A failed attempt spends the code too.
			if status, _, _ := s.exchange(t, q.Get("code"), s.verifier, s.redirect); status != http.StatusBadRequest {
				t.Errorf("code still good after a failed attempt: %d", status)
			}
		})
	}
}

func TestLoginAuthorizeChecks(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(url.Values)
		wantStatus int    // shown here, never redirected
		wantError  string // redirected back with this error
	}{
		{name: "unknown client", mod: func(q url.Values) { q.Set("client_id", "other") }, wantStatus: http.StatusBadRequest},
		{name: "other redirect", mod: func(q url.Values) { q.Set("redirect_uri", "http://evil.test/ui/callback") }, wantStatus: http.StatusBadRequest},
		{name: "redirect prefix", mod: func(q url.Values) { q.Set("redirect_uri", testConsole+"/ui/callback?x=1") }, wantStatus: http.StatusBadRequest},
		{name: "plain PKCE", mod: func(q url.Values) { q.Set("code_challenge_method", "plain") }, wantError: "invalid_request"},
		{name: "no PKCE", mod: func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, wantError: "invalid_request"},
		{name: "no state", mod: func(q url.Values) { q.Del("state") }, wantError: "invalid_request"},
		{name: "implicit", mod: func(q url.Values) { q.Set("response_type", "token") }, wantError: "unsupported_response_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newLoginSetup(t)
			resp, err := noRedirect(t).Get(s.authorizeURL(tt.mod))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tt.wantStatus != 0 {
				if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != "" {
					t.Errorf("got %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != tt.wantError {
				t.Errorf("got %d, Location %s", resp.StatusCode, loc)
			}
		})
	}
}

// TestLoginCSRF: a form posted without the cookie set when it was shown
// (another site's page submitting it) is refused, and a form is single-use.
func TestLoginCSRF(t *testing.T) {
	s := newLoginSetup(t)
	c := noRedirect(t)
	resp, err := c.Get(s.authorizeURL(nil))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := strings.Index(string(page), formRE)
	id := string(page[i+len(formRE):])
	id = id[:strings.IndexByte(id, '"')]
	f := url.Values{"form": {id}, "username": {"mallory"}, "admin": {"1"}}

	resp, err = noRedirect(t).PostForm(s.base+AuthorizePath, f) // no cookie
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the cookie: %d", resp.StatusCode)
	}
	resp, _ = c.PostForm(s.base+AuthorizePath, f)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	// The same form again (a replay with the cookie put back).
	req, _ := http.NewRequest(http.MethodPost, s.base+AuthorizePath, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: formCookie, Value: id})
	resp, _ = noRedirect(t).Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("replayed form: %d", resp.StatusCode)
	}
}

func TestLoginDiscovery(t *testing.T) {
	s := newLoginSetup(t)
	resp, err := http.Get(s.base + DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d["issuer"] != s.base || d["token_endpoint"] != s.base+TokenPath || d["authorization_endpoint"] != s.base+AuthorizePath ||
		d["jwks_uri"] != s.base+JWKSPath {
		t.Errorf("discovery %v", d)
	}
}
