package impl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/uuidform"
	"github.com/jobsd/jobsd/tracing"
)

type principalKey struct{}

// principalFrom returns the authenticated caller that authenticate stored.
func principalFrom(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey{}).(*auth.Principal)
	return p
}

// authenticate verifies the bearer token of every /api request before
// anything else looks at the request, so a caller without a valid token
// learns nothing, not even whether an id is well formed. It runs as an echo
// middleware because the generated wrapper binds path parameters before
// strict middlewares would run. An address whose tokens failed too often
// (fails) gets a 429 before its token is checked, so that a flood of bad
// tokens costs no signature checks beyond the limit.
func authenticate(v Verifier, fails *addrLimiter, log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !strings.HasPrefix(req.URL.Path, "/api/") && req.URL.Path != "/api" {
				return next(c)
			}
			token, ok := auth.BearerToken(headerValue(req.Header, echo.HeaderAuthorization))
			if !ok {
				return errUnauthorized
			}
			var addr netip.Addr
			if fails != nil {
				addr = addrKey(c.RealIP())
			}
			var now time.Time
			if fails != nil {
				now = time.Now()
			}
			r, ok, wait := fails.admit(addr, now)
			if !ok {
				return tooMany(wait)
			}
			p, err := v.Verify(req.Context(), token)
			if fails != nil {
				// At the admission's time: a reservation cancelled at a
				// later time gives nothing back (rate.Reservation.CancelAt).
				fails.done(addr, r, err != nil, now)
			}
			if err != nil {
				// Only this 401 follows a token that was sent; kept for
				// wwwAuthenticate (setting it on every request cost a map).
				c.Set(tokenPresentedKey, true)
				// The reason is for the log only; the client gets the documented message.
				log.Info("token rejected", "request_id", requestID(c), "reason", err)
				return errUnauthorized
			}
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), principalKey{}, p)))
			return next(c)
		}
	}
}

const tokenPresentedKey = "jobsd.token_presented"

// wwwAuthenticate is the RFC 6750 challenge: plain "Bearer" when no token was
// sent, with error="invalid_token" when one was and it failed.
func wwwAuthenticate(c echo.Context) string {
	if presented, _ := c.Get(tokenPresentedKey).(bool); presented {
		return `Bearer error="invalid_token"`
	}
	return "Bearer"
}

// checkJobID answers 400 for any {id} path parameter that is not a UUID in
// the canonical 36-character form (either case) after percent-decoding.
// google/uuid, which the generated binder uses, also accepts braces,
// "urn:uuid:" and 32 bare hex digits; those must not reach it.
func checkJobID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for i, name := range c.ParamNames() {
			if name != "id" && name != "deliveryId" {
				continue
			}
			raw := c.ParamValues()[i]
			if c.Request().URL.RawPath != "" {
				unescaped, err := url.PathUnescape(raw)
				if err != nil {
					return errInvalidUUID
				}
				raw = unescaped
			}
			if !uuidform.IsCanonical(raw) {
				return errInvalidUUID
			}
		}
		return next(c)
	}
}

// validateRequest checks parameters and bodies against openapi.yaml with
// kin-openapi (the strict server does not) and turns its findings into 400s
// that name the field. Routes outside the spec pass through untouched.
func validateRequest(routes map[string]specRoute) echo.MiddlewareFunc {
	opts := &openapi3filter.Options{
		// authenticate has already checked the token.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			route, ok := routes[req.Method+" "+c.Path()]
			if !ok {
				return next(c) // the router answers 404 or 405
			}
			if route.plainlyValid(req) {
				return next(c)
			}
			// echo matched the escaped path when it differs from the decoded
			// one; checkJobID has already accepted the decoded values.
			pathParams := make(map[string]string, len(c.ParamNames()))
			for i, name := range c.ParamNames() {
				v := c.ParamValues()[i]
				if req.URL.RawPath != "" {
					if d, err := url.PathUnescape(v); err == nil {
						v = d
					}
				}
				pathParams[name] = v
			}
			if route.Operation.RequestBody != nil {
				if err := checkJSONContentType(req); err != nil {
					return err
				}
			}
			in := &openapi3filter.RequestValidationInput{
				Request: req, PathParams: pathParams, Route: route.Route, Options: opts,
			}
			if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
				return requestValidationError(err)
			}
			return next(c)
		}
	}
}

func checkJSONContentType(req *http.Request) error {
	ct := req.Header.Get(echo.HeaderContentType)
	if ct == "" && req.ContentLength == 0 {
		return nil // a missing body is reported as such
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != echo.MIMEApplicationJSON {
		return errorf(http.StatusUnsupportedMediaType, msgMediaType)
	}
	return nil
}

// requestValidationError words a kin-openapi finding for the client: which
// parameter or field, and what is wrong with it.
func requestValidationError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errorf(http.StatusRequestEntityTooLarge, msgTooLarge)
	}
	var re *openapi3filter.RequestError
	if !errors.As(err, &re) {
		return fmt.Errorf("validate request: %w", err)
	}
	var se *openapi3.SchemaError
	hasSchemaErr := errors.As(re.Err, &se)
	switch {
	case re.Parameter != nil:
		where := "parameter"
		switch re.Parameter.In {
		case openapi3.ParameterInQuery:
			where = "query parameter"
		case openapi3.ParameterInHeader:
			where = "header"
		}
		reason := "is invalid"
		if hasSchemaErr {
			reason = se.Reason
		} else if errors.Is(re.Err, openapi3filter.ErrInvalidRequired) {
			reason = "is required"
		}
		return errorf(http.StatusBadRequest, fmt.Sprintf("Invalid %s %q: %s", where, re.Parameter.Name, reason))
	case re.RequestBody != nil:
		if hasSchemaErr {
			return errorf(http.StatusBadRequest, bodyMessage(se))
		}
		if errors.Is(re.Err, openapi3filter.ErrInvalidRequired) {
			return errorf(http.StatusBadRequest, "Invalid request body: a JSON body is required")
		}
		var pe *openapi3filter.ParseError
		if errors.As(re.Err, &pe) {
			return errorf(http.StatusBadRequest, "Invalid request body: malformed JSON")
		}
		return errorf(http.StatusBadRequest, "Invalid request body")
	}
	return errorf(http.StatusBadRequest, "Invalid request")
}

// bodyMessage names the field a schema error is about, as a dotted path
// ("input.requirements[0]"), and says what is wrong with it in words that do
// not depend on kin-openapi's phrasing where that phrasing is unclear.
func bodyMessage(se *openapi3.SchemaError) string {
	// A oneOf failure's own reason is vague; its inner error is the useful one.
	var inner *openapi3.SchemaError
	if errors.As(se.Origin, &inner) {
		se = inner
	}
	path := fieldPath(se.JSONPointer())
	reason := se.Reason
	if m := propertyReason.FindStringSubmatch(reason); m != nil {
		if !strings.HasSuffix(path, m[1]) {
			path = fieldPath(append(se.JSONPointer(), m[1]))
		}
		reason = map[string]string{"missing": "is required", "unsupported": "is not allowed"}[m[2]]
	}
	switch {
	case strings.HasPrefix(reason, "discriminator property"), strings.Contains(reason, "does not contain the discriminator"):
		path, reason = "type", "must be one of PARSE_DOCUMENT, GAP_DETECTION, RISK_ANALYSIS, REPORT_GENERATION"
	case se.SchemaField == "format" && se.Schema != nil:
		reason = map[string]string{"uuid": "must be a UUID in canonical form", "byte": "must be standard base64"}[se.Schema.Format]
		if reason == "" {
			reason = "has the wrong format"
		}
	case se.SchemaField == "pattern":
		reason = "has characters that are not allowed"
	}
	if path == "" {
		return "Invalid request body: " + reason
	}
	return fmt.Sprintf("Invalid request body: field %q %s", path, reason)
}

var propertyReason = regexp.MustCompile(`^property "([^"]+)" is (missing|unsupported)$`)

func fieldPath(pointer []string) string {
	var b strings.Builder
	for _, p := range pointer {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// assignRequestID names every request with an id of the server's own, sent
// back in X-Request-Id: a client could otherwise choose the id the log is
// searched by (and make two requests look like one). An X-Request-Id the
// client sent is kept for the log line as client_request_id, when it is
// short printable text.
func assignRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		var id [32]byte
		hex.Encode(id[:], b[:])
		c.Response().Header()[echo.HeaderXRequestID] = []string{string(id[:])} // the key is canonical
		return next(c)
	}
}

// headerValue is h.Get(key) for a key already in canonical form, which
// h.Get would check again on every call.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// clientRequestID is the X-Request-Id a client sent, if it is fit to log.
func clientRequestID(c echo.Context) string {
	id := c.Request().Header.Get(echo.HeaderXRequestID)
	if id == "" || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}

// logRequests writes one line per request: no tokens, no bodies.
func logRequests(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !log.Enabled(c.Request().Context(), slog.LevelInfo) {
				// The line would be dropped (JOBS_LOG_LEVEL=warn): build none of it.
				if err := next(c); err != nil {
					c.Error(err)
				}
				return nil
			}
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err) // write the response now, so the status below is final
			}
			ctx := c.Request().Context()
			// Attrs, not key-value pairs: they do not box each value.
			attrs := make([]slog.Attr, 0, 8)
			attrs = append(attrs, slog.String("request_id", requestID(c)), slog.String("method", c.Request().Method),
				slog.String("route", c.Path()), slog.Int("status", c.Response().Status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
			if id := jobIDOf(c); id != "" {
				attrs = append(attrs, slog.String("job_id", id))
			}
			if id := clientRequestID(c); id != "" {
				attrs = append(attrs, slog.String("client_request_id", id))
			}
			if tid := tracing.TraceID(c.Request().Context()); tid != "" {
				attrs = append(attrs, slog.String("trace_id", tid))
			}
			log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
			return nil
		}
	}
}

// recoverPanics turns a panic into a 500 with the documented shape and logs
// the stack; the process keeps serving.
func recoverPanics(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler { //nolint:errorlint // a recovered value, compared as net/http compares it
						panic(r)
					}
					log.Error("panic", "request_id", requestID(c), "panic", r, "stack", stack())
					err = errorf(http.StatusInternalServerError, msgInternal)
				}
			}()
			return next(c)
		}
	}
}
