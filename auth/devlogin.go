package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Paths of the sign-in endpoints below the issuer URL, as the Cognito hosted
// UI names them, and of the OpenID discovery document.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	AuthorizePath = "/oauth2/authorize"
	TokenPath     = "/oauth2/token"
)

// Lifetimes of the dev sign-in's one-time values.
const (
	// CodeTTL is how long an authorization code can be exchanged (RFC 6749
	// recommends at most 10 minutes; a browser exchanges it within a second).
	CodeTTL = time.Minute
	// loginFormTTL is how long a sign-in form can be submitted.
	loginFormTTL = 10 * time.Minute
	// maxPending bounds the forms and codes kept at once, so a script that
	// opens forms in a loop cannot grow the process without bound.
	maxPending = 10_000
)

// LoginConfig is the one browser client the dev issuer signs users in for.
type LoginConfig struct {
	// ClientID is the client_id a request must name; minted tokens carry it.
	ClientID string
	// RedirectURI is the only redirect_uri accepted, compared exactly.
	RedirectURI string
	// AdminGroup is the cognito:groups value given when "admin" is ticked.
	AdminGroup string
	// TokenTTL is the lifetime of minted access tokens (default 1 hour).
	TokenTTL time.Duration
}

// Login serves a minimal OAuth 2.0 authorization server for development, the
// subset of the Cognito hosted UI a browser console uses: the OpenID
// discovery document, an authorize endpoint (a username form with an "admin"
// box instead of a password: anyone may be anyone here) and a token endpoint
// for the authorization code grant with PKCE (S256 only). Codes are
// single-use and short-lived; redirect_uri must match exactly.
type Login struct {
	iss    *Issuer
	cfg    LoginConfig
	prefix string // the issuer URL's path, e.g. "/dev-issuer"
	origin string // the redirect URI's origin, the only CORS origin

	mu    sync.Mutex
	forms map[string]loginForm
	codes map[string]grant
}

// loginForm is an authorize request that was checked and shown as a form.
type loginForm struct {
	state, challenge string
	expires          time.Time
}

// grant is what an authorization code stands for.
type grant struct {
	sub       string
	groups    []string
	challenge string
	expires   time.Time
}

// NewLogin returns the sign-in endpoints of iss for one client.
func NewLogin(iss *Issuer, cfg LoginConfig) (*Login, error) {
	u, err := url.Parse(iss.URL())
	if err != nil {
		return nil, fmt.Errorf("auth: issuer URL: %w", err)
	}
	ru, err := url.Parse(cfg.RedirectURI)
	if err != nil || ru.Scheme == "" || ru.Host == "" || ru.Fragment != "" {
		return nil, fmt.Errorf("auth: redirect URI %q must be an absolute URL without a fragment", cfg.RedirectURI)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("auth: the login client id is required")
	}
	if cfg.AdminGroup == "" {
		cfg.AdminGroup = DefaultAdminGroup
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	return &Login{
		iss: iss, cfg: cfg,
		prefix: strings.TrimSuffix(u.Path, "/"),
		origin: ru.Scheme + "://" + ru.Host,
		forms:  map[string]loginForm{},
		codes:  map[string]grant{},
	}, nil
}

// Handler serves the discovery document, authorize, token and the JWKS at
// their full paths (the issuer URL's path followed by theirs).
func (l *Login) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+l.prefix+DiscoveryPath, l.discovery)
	mux.Handle("GET "+l.prefix+JWKSPath, publicCORS(l.iss.JWKSHandler()))
	mux.HandleFunc("GET "+l.prefix+AuthorizePath, l.authorizeForm)
	mux.HandleFunc("POST "+l.prefix+AuthorizePath, l.authorizeSubmit)
	mux.HandleFunc("POST "+l.prefix+TokenPath, l.token)
	mux.HandleFunc("OPTIONS "+l.prefix+TokenPath, l.tokenPreflight)
	return mux
}

// publicCORS lets any origin read a public document.
func publicCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}

// discovery serves the OpenID Provider metadata the console reads.
func (l *Login) discovery(w http.ResponseWriter, _ *http.Request) {
	base := l.iss.URL()
	doc := map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + AuthorizePath,
		"token_endpoint":                        base + TokenPath,
		"jwks_uri":                              base + JWKSPath,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid"},
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, doc)
}

// pkceValue is the shape of a code_challenge (S256: 43 base64url
// characters) and of a code_verifier (RFC 7636: 43 to 128 unreserved
// characters).
var (
	challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	verifierRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

const formCookie = "jobsd_dev_login"

// authorizeForm checks an authorization request and shows the sign-in form.
// A wrong client or redirect URI is shown here, never redirected to (RFC
// 6749 4.1.2.1); other errors go back to the client with its state.
func (l *Login) authorizeForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != l.cfg.ClientID {
		l.page(w, http.StatusBadRequest, pageData{Error: "Unknown client_id."})
		return
	}
	if q.Get("redirect_uri") != l.cfg.RedirectURI {
		l.page(w, http.StatusBadRequest, pageData{Error: "redirect_uri is not the registered one."})
		return
	}
	state := q.Get("state")
	switch {
	case state == "" || len(state) > 200:
		l.redirectError(w, r, state, "invalid_request", "state is required (at most 200 characters)")
		return
	case q.Get("response_type") != "code":
		l.redirectError(w, r, state, "unsupported_response_type", "only response_type=code")
		return
	case q.Get("code_challenge_method") != "S256":
		l.redirectError(w, r, state, "invalid_request", "code_challenge_method must be S256")
		return
	case !challengeRE.MatchString(q.Get("code_challenge")):
		l.redirectError(w, r, state, "invalid_request", "code_challenge must be 43 base64url characters")
		return
	}
	id, err := randomID()
	if err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	l.mu.Lock()
	l.prune(time.Now())
	full := len(l.forms) >= maxPending
	if !full {
		l.forms[id] = loginForm{state: state, challenge: q.Get("code_challenge"), expires: time.Now().Add(loginFormTTL)}
	}
	l.mu.Unlock()
	if full {
		l.page(w, http.StatusServiceUnavailable, pageData{Error: "Too many sign-ins in progress; try again in a minute."})
		return
	}
	// The form's id travels twice, in a hidden field and in a SameSite=Strict
	// cookie: a page on another site can neither read the field nor send
	// the cookie, so it cannot submit the form for the user (login CSRF).
	http.SetCookie(w, &http.Cookie{
		Name: formCookie, Value: id, Path: l.prefix + AuthorizePath, MaxAge: int(loginFormTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	l.page(w, http.StatusOK, pageData{Form: id, Action: l.prefix + AuthorizePath})
}

// maxUsername bounds the user name typed in the form.
const maxUsername = 128

// authorizeSubmit signs the user in and sends the browser back with a code.
func (l *Login) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		l.page(w, http.StatusBadRequest, pageData{Error: "The form could not be read."})
		return
	}
	id := r.PostForm.Get("form")
	c, err := r.Cookie(formCookie)
	if id == "" || err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(id)) != 1 {
		l.page(w, http.StatusForbidden, pageData{Error: "This form was not opened here, or it expired: start the sign-in again."})
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("username"))
	if user == "" || len(user) > maxUsername || strings.ContainsFunc(user, isControl) {
		l.page(w, http.StatusBadRequest, pageData{Form: id, Action: l.prefix + AuthorizePath,
			Error: fmt.Sprintf("Enter a user name of 1 to %d characters.", maxUsername), Username: user})
		return
	}
	now := time.Now()
	l.mu.Lock()
	f, ok := l.forms[id]
	delete(l.forms, id) // single use
	l.mu.Unlock()
	if !ok || now.After(f.expires) {
		l.page(w, http.StatusForbidden, pageData{Error: "This form was already used, or it expired: start the sign-in again."})
		return
	}
	var groups []string
	if r.PostForm.Get("admin") != "" {
		groups = []string{l.cfg.AdminGroup}
	}
	code, err := randomID()
	if err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	l.mu.Lock()
	l.prune(now)
	full := len(l.codes) >= maxPending
	if !full {
		l.codes[code] = grant{sub: user, groups: groups, challenge: f.challenge, expires: now.Add(CodeTTL)}
	}
	l.mu.Unlock()
	if full {
		l.page(w, http.StatusServiceUnavailable, pageData{Error: "Too many sign-ins in progress; try again in a minute."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: formCookie, Path: l.prefix + AuthorizePath, MaxAge: -1})
	l.redirect(w, r, url.Values{"code": {code}, "state": {f.state}})
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// prune drops expired forms and codes; the caller holds l.mu.
func (l *Login) prune(now time.Time) {
	for k, f := range l.forms {
		if now.After(f.expires) {
			delete(l.forms, k)
		}
	}
	for k, g := range l.codes {
		if now.After(g.expires) {
			delete(l.codes, k)
		}
	}
}

func (l *Login) redirectError(w http.ResponseWriter, r *http.Request, state, code, desc string) {
	v := url.Values{"error": {code}, "error_description": {desc}}
	if state != "" {
		v.Set("state", state)
	}
	l.redirect(w, r, v)
}

// redirect sends the browser to the registered redirect URI with v in its
// query. 303 turns the form's POST into a GET.
func (l *Login) redirect(w http.ResponseWriter, r *http.Request, v url.Values) {
	sep := "?"
	if strings.Contains(l.cfg.RedirectURI, "?") {
		sep = "&"
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, l.cfg.RedirectURI+sep+v.Encode(), http.StatusSeeOther)
}

// tokenResponse is RFC 6749's successful token response.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// token exchanges a code and its PKCE verifier for an access token. The
// code is spent by the first attempt, right or wrong.
func (l *Login) token(w http.ResponseWriter, r *http.Request) {
	l.cors(w, r)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the form could not be read")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "authorization_code":
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code")
		return
	case f.Get("client_id") != l.cfg.ClientID:
		tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	code := f.Get("code")
	l.mu.Lock()
	g, ok := l.codes[code]
	delete(l.codes, code)
	l.mu.Unlock()
	switch {
	case !ok || time.Now().After(g.expires):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
		return
	case f.Get("redirect_uri") != l.cfg.RedirectURI:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
		return
	case !verifierRE.MatchString(f.Get("code_verifier")) || !pkceMatches(f.Get("code_verifier"), g.challenge):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	tok, err := l.iss.Mint(g.sub, l.cfg.ClientID, g.groups, l.cfg.TokenTTL)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "could not sign the token")
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(l.cfg.TokenTTL.Seconds())})
}

// pkceMatches is RFC 7636's S256 check: BASE64URL(SHA256(verifier)) equals
// the challenge.
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// cors lets the console's origin, and only it, read token responses: in
// production the issuer (Cognito's) is another origin than the console.
func (l *Login) cors(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if r.Header.Get("Origin") == l.origin {
		w.Header().Set("Access-Control-Allow-Origin", l.origin)
	}
}

func (l *Login) tokenPreflight(w http.ResponseWriter, r *http.Request) {
	l.cors(w, r)
	w.Header().Set("Access-Control-Allow-Methods", "POST")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// pageData fills the sign-in page.
type pageData struct {
	Form, Action, Error, Username string
}

// loginCSS is the page's only style; its hash in the Content-Security-Policy
// allows it and nothing else inline.
const loginCSS = `:root{color-scheme:light dark;font-family:system-ui,sans-serif}
body{max-width:24rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
label{display:block;margin:.75rem 0 .25rem}
input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}
button{margin-top:1rem;padding:.5rem 1.25rem;font:inherit}
.error{border-left:4px solid #b3261e;padding:.25rem .75rem}
.note{font-size:.9rem}`

var loginCSSHash = func() string {
	sum := sha256.Sum256([]byte(loginCSS))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · jobsd dev issuer</title>
<style>` + loginCSS + `</style>
</head>
<body>
<main>
<h1>Sign in to jobsd</h1>
<p class="note">Development issuer: there is no password; whoever you type is who you are.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Form}}<form method="post" action="{{.Action}}">
<input type="hidden" name="form" value="{{.Form}}">
<label for="username">User name</label>
<input type="text" id="username" name="username" value="{{.Username}}" required maxlength="128" autocomplete="username" autofocus>
<label><input type="checkbox" name="admin" value="1" checked> Administrator (the admin group)</label>
<button type="submit">Sign in</button>
</form>{{end}}
</main>
</body>
</html>
`))

// page writes the sign-in page: it cannot be framed (clickjacking) and runs
// no script; the form may post here and redirect to the console only.
func (l *Login) page(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+loginCSSHash+
		"; form-action 'self' "+l.origin+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, d)
}
