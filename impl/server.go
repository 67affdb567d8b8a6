// Package impl fulfils the generated server.StrictServerInterface against the
// PostgreSQL store, and assembles the echo server around it: request ids,
// authentication, the canonical-UUID check, kin-openapi request validation,
// and one error handler that gives every error the documented shape.
package impl

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/internal/uuidform"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
)

// Verifier checks a bearer token; *auth.Verifier is the one in production.
type Verifier interface {
	Verify(ctx context.Context, token string) (*auth.Principal, error)
}

// Config is what the API server needs.
type Config struct {
	Store    *store.Store
	Verifier Verifier
	Log      *slog.Logger
	// CORSOrigins is the allow-list of browser origins; empty turns CORS off.
	CORSOrigins []string
	// MaxBodyBytes bounds request bodies; 0 means 8 MiB.
	MaxBodyBytes int64
	// MaxAttempts is how many processing attempts a new job gets; 0 means 3.
	MaxAttempts int
	// Hub wakes long polls and event streams when a job changes; without
	// one they re-read the job every second.
	Hub *hub.Hub
	// TerminalCacheItems bounds the cache of finished jobs; 0 means 100,000,
	// negative turns it off.
	TerminalCacheItems int
	// Retention is how long finished jobs are kept (0: for ever); the cache
	// of finished jobs never serves one older than that.
	Retention time.Duration
	// Draining, when closed, tells long polls to answer at once and event
	// streams to end, so that a graceful shutdown does not wait for them.
	Draining <-chan struct{}
	// ReadLimit and CreateLimit are per-user rate limits on reads (GET) and
	// on creations and cancellations (POST); zero values turn them off.
	ReadLimit, CreateLimit RateLimit
	// Metrics receives the HTTP and job counters; nil records nothing.
	Metrics *metrics.API
	// Replicas counts the live API processes; the per-user limits
	// (ReadLimit, CreateLimit, UserWaiters) are for the whole deployment
	// and each process enforces its share. Nil: this process alone.
	Replicas *Replicas
	// UserWaiters caps each user's open long polls and event streams
	// across the deployment; 0 turns the cap off.
	UserWaiters int
	// AuthFailLimit bounds failed authentications per client address (in
	// this process); past it a request is a 429 before its token is
	// checked. Zero turns it off.
	AuthFailLimit RateLimit
	// TrustedProxies are the peers whose X-Forwarded-For gives the client
	// address; empty: the peer is the client.
	TrustedProxies []*net.IPNet
	// Webhooks configures the webhook endpoints' API.
	Webhooks WebhookConfig
}

// DefaultMaxBodyBytes fits the largest document a PARSE_DOCUMENT job takes.
const DefaultMaxBodyBytes = job.DefaultMaxBodyBytes

// RetryAfterSeconds is the documented polling interval.
const RetryAfterSeconds = 3

// Server implements the API's operations.
type Server struct {
	store       *store.Store
	log         *slog.Logger
	maxAttempts int
	hub         *hub.Hub
	terminal    *terminalCache
	retention   time.Duration
	draining    <-chan struct{}
	metrics     *metrics.API
	stats       statsCache // the admin stats of the last statsTTL
	replicas    *Replicas
	waiters     *waiterSlots
	webhooks    WebhookConfig
}

var _ server.StrictServerInterface = (*Server)(nil)

// New returns the echo server with every route of openapi.yaml.
func New(cfg Config) (*echo.Echo, error) {
	if cfg.Store == nil || cfg.Verifier == nil {
		return nil, fmt.Errorf("impl: Store and Verifier are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = job.DefaultMaxAttempts
	}
	routes, err := specRoutes()
	if err != nil {
		return nil, err
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(cfg.Log)
	e.IPExtractor = clientIP(cfg.TrustedProxies)
	chain := []echo.MiddlewareFunc{
		metricsMiddleware(cfg.Metrics), // first: it sees every answer
		traceRequests,                  // then the request's span, which the log line reads
		assignRequestID,
		logRequests(cfg.Log),
		recoverPanics(cfg.Log),
	}
	if len(cfg.CORSOrigins) > 0 {
		chain = append(chain, middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:  cfg.CORSOrigins,
			AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions},
			AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, "Idempotency-Key", "If-None-Match", "Last-Event-ID"},
			ExposeHeaders: []string{"ETag", "Retry-After", "Location", "Cache-Control", echo.HeaderXRequestID},
			MaxAge:        600,
		}))
	}
	chain = append(chain,
		limitBody(cfg.MaxBodyBytes),
		authenticate(cfg.Verifier, newAddrLimiter(cfg.AuthFailLimit), cfg.Log),
		limitRate(newUserLimiters(cfg.ReadLimit), newUserLimiters(cfg.CreateLimit), cfg.Replicas),
		requireAdmin,
		deadlines,
		checkJobID,
		validateRequest(routes),
	)
	e.Use(composed(chain...))

	if cfg.TerminalCacheItems == 0 {
		cfg.TerminalCacheItems = 100_000
	}
	s := &Server{store: cfg.Store, log: cfg.Log, maxAttempts: cfg.MaxAttempts, hub: cfg.Hub, draining: cfg.Draining, metrics: cfg.Metrics,
		retention: cfg.Retention, replicas: cfg.Replicas, waiters: newWaiterSlots(cfg.UserWaiters), webhooks: cfg.Webhooks}
	if cfg.TerminalCacheItems > 0 {
		s.terminal = newTerminalCache(cfg.TerminalCacheItems, 256<<20)
	}
	server.RegisterHandlers(pollRoutes{e, s}, server.NewStrictHandler(s, nil))
	return e, nil
}

// composed is the middlewares mws (the first outermost) as one, joined here
// once: echo joins its middlewares to the matched route's handler on every
// request, a closure per middleware (half of a cached poll's allocations).
// The joined chain ends in the handler echo matched, c.Handler(), which is
// the handler echo passes to its innermost middleware; so composed must be
// the only middleware of e.Use (one added after it would be skipped).
// Routes may still have middlewares of their own.
func composed(mws ...echo.MiddlewareFunc) echo.MiddlewareFunc {
	h := func(c echo.Context) error { return c.Handler()(c) }
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return func(echo.HandlerFunc) echo.HandlerFunc { return h }
}

// Spec returns openapi.yaml as embedded in the binary, ready for validation.
func Spec() (*openapi3.T, error) {
	registerFormats()
	doc, err := server.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load embedded spec: %w", err)
	}
	doc.Servers = nil // match paths whatever host serves them
	return doc, nil
}

// specRoutes maps each operation of openapi.yaml to the echo route it is
// registered as ("GET /api/jobs/:id"), so that validation finds a request's
// operation by echo's own match instead of matching the path again.
func specRoutes() (map[string]specRoute, error) {
	doc, err := Spec()
	if err != nil {
		return nil, err
	}
	routes := map[string]specRoute{}
	for path, item := range doc.Paths.Map() {
		echoPath := strings.NewReplacer("{", ":", "}", "").Replace(path)
		for method, op := range item.Operations() {
			r := specRoute{Route: &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op}}
			r.simple, r.query, r.headers = simpleParams(item, op)
			routes[method+" "+echoPath] = r
		}
	}
	return routes, nil
}

var registerOnce sync.Once

// registerFormats teaches kin-openapi the "uuid" and "byte" formats, which it
// does not check by default. "uuid" is the only form the API accepts or
// writes, the canonical one (kin-openapi's RFC 4122 pattern would reject
// UUIDv7, which jobsd's own ids are). "byte" is standard base64, as encoding/json
// decodes it.
func registerFormats() {
	registerOnce.Do(func() {
		openapi3.DefineStringFormatValidator("uuid", openapi3.NewCallbackValidator(uuidform.Check))
		openapi3.DefineStringFormatValidator("byte", openapi3.NewCallbackValidator(func(s string) error {
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return errors.New("is not valid base64")
			}
			return nil
		}))
	})
}

// limitBody answers 413 for bodies over max, whether announced by
// Content-Length or found while reading.
func limitBody(max int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.ContentLength > max {
				return errorf(http.StatusRequestEntityTooLarge, msgTooLarge)
			}
			if req.Body == http.NoBody {
				return next(c) // nothing to read (net/http's body of a GET)
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, max)
			return next(c)
		}
	}
}

func stack() string { return string(debug.Stack()) }

// RequestDeadline bounds reading a request's body and writing its answer,
// so that a slow client cannot hold a connection forever. Long polls get
// their wait on top; event streams set a deadline per event instead.
const RequestDeadline = 30 * time.Second

// deadlines sets per-request read and write deadlines (the server has no
// global write timeout, which would cut long polls and event streams). A
// request without a body (a GET: net/http's NoBody) has nothing left to
// read, so it gets no read deadline: each deadline is a timer operation.
func deadlines(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasSuffix(c.Path(), "/events") {
			return next(c)
		}
		d := RequestDeadline
		if w := waitSeconds(c); w > 0 && w <= 30 {
			d += time.Duration(w) * time.Second
		}
		rc := http.NewResponseController(c.Response().Writer)
		now := time.Now()
		if c.Request().Body != http.NoBody {
			_ = rc.SetReadDeadline(now.Add(d))
		}
		_ = rc.SetWriteDeadline(now.Add(d))
		// The server does not reset a write deadline between requests on a
		// kept-alive connection; clear it so the next request starts afresh.
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
		return next(c)
	}
}
