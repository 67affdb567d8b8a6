// Package ui serves the operator console: a dependency-free single-page app
// under /ui/ (HTML, CSS and JavaScript modules embedded in the binary) that
// signs its user in with the OAuth 2.0 authorization code flow and PKCE
// against the token issuer, and then reads the admin API with the access
// token as a bearer token.
//
// The handler serves the assets under /ui/assets/ and the app shell for
// every other path under /ui/, so that deep links (/ui/jobs/{id}) survive a
// reload. It reads the issuer's OpenID discovery document itself, for the
// authorization and token endpoints, so that its Content-Security-Policy can
// allow exactly the token endpoint's origin beside its own.
package ui

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// Prefix is where the console lives; CallbackPath is its redirect URI's path.
const (
	Prefix       = "/ui/"
	CallbackPath = "/ui/callback"
	assetsPrefix = "/ui/assets/"
)

//go:embed static
var static embed.FS

// Config is what the console needs.
type Config struct {
	// Issuer is the token issuer's URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID is the OAuth client (a Cognito app client without a secret)
	// the console signs in as.
	ClientID string
	// BaseURL is the console's public origin, e.g. https://jobs.example.com;
	// the redirect URI is BaseURL + CallbackPath and must be registered with
	// the issuer exactly so.
	BaseURL string
	// HTTPClient reads the discovery document; nil means a 10 s timeout.
	HTTPClient *http.Client
	Log        *slog.Logger
}

// CheckBaseURL accepts an http or https origin: a scheme and a host, no
// path, query or fragment.
func CheckBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin such as https://jobs.example.com", s)
	}
	return nil
}

// URL is the console's address for a base URL.
func URL(baseURL string) string {
	return strings.TrimSuffix(baseURL, "/") + Prefix
}

// RedirectURI is the console's redirect URI for a base URL.
func RedirectURI(baseURL string) string {
	return strings.TrimSuffix(baseURL, "/") + CallbackPath
}

// Handler serves the console.
type Handler struct {
	cfg      Config
	redirect string
	hsts     bool
	assets   map[string]asset
	shell    *template.Template

	mu       sync.Mutex
	disc     *discovery
	discErr  error
	discTime time.Time
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// New checks cfg and loads the embedded files.
func New(cfg Config) (*Handler, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("ui: a client id is required")
	}
	if err := CheckBaseURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("ui: base URL: %w", err)
	}
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("ui: issuer %q is not an http(s) URL", cfg.Issuer)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	assets, err := loadAssets()
	if err != nil {
		return nil, err
	}
	shell, err := template.ParseFS(static, "static/index.html")
	if err != nil {
		return nil, fmt.Errorf("ui: app shell: %w", err)
	}
	return &Handler{
		cfg: cfg, redirect: RedirectURI(cfg.BaseURL), hsts: strings.HasPrefix(cfg.BaseURL, "https://"),
		assets: assets, shell: shell,
	}, nil
}

func loadAssets() (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "static/index.html" {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if path.Ext(p) == ".js" {
			ct = "text/javascript; charset=utf-8" // module scripts need a JavaScript type
		}
		assets[strings.TrimPrefix(p, "static/")] = asset{
			body: body, contentType: ct,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ui: load assets: %w", err)
	}
	return assets, nil
}

// ServeHTTP serves /ui/assets/* from the embedded files and the app shell
// for any other path under /ui/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == strings.TrimSuffix(Prefix, "/"):
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	case strings.HasPrefix(p, assetsPrefix):
		h.serveAsset(w, r, strings.TrimPrefix(p, assetsPrefix))
	case strings.HasPrefix(p, Prefix):
		h.serveShell(w, r)
	default:
		http.NotFound(w, r)
	}
}

// securityHeaders are sent with every console response.
func (h *Handler) securityHeaders(hd http.Header) {
	hd.Set("X-Content-Type-Options", "nosniff")
	// The callback URL holds the authorization code for a moment: no
	// Referer may carry it (or any console URL) elsewhere.
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if h.hsts {
		hd.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := h.assets[name]
	if !ok {
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	// Revalidate every time: the files change with the binary and carry no
	// version in their names; a 304 costs one round trip.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", "default-src 'none'")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", fmt.Sprint(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

// shellData fills index.html's meta tags, which the app reads at start.
type shellData struct {
	ClientID, RedirectURI, Authorize, Token, EndSession string
}

func (h *Handler) serveShell(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	d, err := h.discovery(r.Context())
	if err != nil {
		h.cfg.Log.Warn("console: issuer discovery failed", "issuer", h.cfg.Issuer, "err", err)
		hd.Set("Content-Security-Policy", "default-src 'none'")
		hd.Set("Retry-After", "10")
		http.Error(w, "The console cannot reach the token issuer's discovery document; try again shortly.", http.StatusServiceUnavailable)
		return
	}
	hd.Set("Content-Security-Policy", contentSecurityPolicy(d.tokenOrigin))
	hd.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	err = h.shell.Execute(w, shellData{
		ClientID: h.cfg.ClientID, RedirectURI: h.redirect,
		Authorize: d.AuthorizationEndpoint, Token: d.TokenEndpoint, EndSession: d.EndSessionEndpoint,
	})
	if err != nil {
		h.cfg.Log.Warn("console: write app shell", "err", err)
	}
}

// contentSecurityPolicy allows scripts, styles and images from the console
// itself only (no inline script or style), and connections to the API (the
// same origin) and to the issuer's token endpoint.
func contentSecurityPolicy(tokenOrigin string) string {
	connect := "'self'"
	if tokenOrigin != "" {
		connect += " " + tokenOrigin
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src " + connect +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

// discovery is the part of the OpenID Provider metadata the console uses.
type discovery struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	EndSessionEndpoint            string   `json:"end_session_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	tokenOrigin                   string
}

// Discovery document caching: a good document is kept for an hour, a
// failure is retried at most every 5 seconds.
const (
	discoveryTTL   = time.Hour
	discoveryRetry = 5 * time.Second
)

// discovery returns the issuer's document, reading it when the cached one
// is missing or old. The lock is held across the read on purpose: requests
// that arrive meanwhile wait for that one read (at most the client's
// timeout) instead of each sending their own to the issuer.
func (h *Handler) discovery(ctx context.Context) (*discovery, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	age := time.Since(h.discTime)
	if h.disc != nil && age < discoveryTTL {
		return h.disc, nil
	}
	if h.discErr != nil && age < discoveryRetry {
		return nil, h.discErr
	}
	d, err := fetchDiscovery(ctx, h.cfg.HTTPClient, h.cfg.Issuer)
	h.discTime = time.Now()
	if err != nil {
		h.discErr = err
		if h.disc != nil {
			return h.disc, nil // keep serving the last good document
		}
		return nil, err
	}
	h.disc, h.discErr = d, nil
	return d, nil
}

// fetchDiscovery reads and checks the issuer's discovery document: its
// issuer must be the configured one (OpenID Connect Discovery 4.3), both
// endpoints absolute http(s) URLs, and PKCE S256 supported if methods are
// listed at all (Cognito's document lists none).
func fetchDiscovery(ctx context.Context, c *http.Client, issuer string) (*discovery, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read discovery document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read discovery document %s: status %d", u, resp.StatusCode)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("decode discovery document %s: %w", u, err)
	}
	if d.Issuer != issuer {
		return nil, fmt.Errorf("discovery document %s names issuer %q, want %q", u, d.Issuer, issuer)
	}
	if len(d.CodeChallengeMethodsSupported) > 0 && !slices.Contains(d.CodeChallengeMethodsSupported, "S256") {
		return nil, fmt.Errorf("issuer %s does not support PKCE S256", issuer)
	}
	for _, e := range []string{d.AuthorizationEndpoint, d.TokenEndpoint} {
		if _, err := origin(e); err != nil {
			return nil, fmt.Errorf("discovery document %s: %w", u, err)
		}
	}
	if d.EndSessionEndpoint != "" {
		if _, err := origin(d.EndSessionEndpoint); err != nil {
			d.EndSessionEndpoint = ""
		}
	}
	d.tokenOrigin, _ = origin(d.TokenEndpoint)
	return &d, nil
}

func origin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q is not an absolute http(s) URL", s)
	}
	return u.Scheme + "://" + u.Host, nil
}
