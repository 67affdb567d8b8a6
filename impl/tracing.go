package impl

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/internal/uuidform"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/tracing"
)

// tracerScope names the API's spans' instrumentation scope.
const tracerScope = "github.com/jobsd/jobsd/impl"

// traceRequests makes one server span per request, named by the route
// template ("GET /api/jobs/:id", never the raw path), continuing the
// caller's W3C trace context when it sends one. Installed right after the
// metrics middleware, it sees every answer, and it puts the span in the
// request's context before the request log and the handlers run. With
// tracing off it costs one atomic load.
func traceRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !tracing.Enabled() {
			return next(c)
		}
		return serveTraced(c, next)
	}
}

func serveTraced(c echo.Context, next echo.HandlerFunc) error {
	req := c.Request()
	method := spanMethod(req.Method)
	name, route := method, routeLabel(c)
	if method == "_OTHER" {
		name = "HTTP" // the semantic conventions' name for an unknown method
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method), semconv.URLPath(req.URL.Path), semconv.URLScheme(scheme(req)))
	if route != metrics.RouteUnmatched {
		name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	if id := c.Param("id"); uuidform.IsCanonical(id) {
		attrs = append(attrs, attribute.String("jobsd.job.id", strings.ToLower(id)))
	}
	ctx := tracing.Propagator().Extract(req.Context(), propagation.HeaderCarrier(req.Header))
	ctx, span := tracing.Tracer(tracerScope).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	defer span.End()
	c.SetRequest(req.WithContext(ctx))
	if err := next(c); err != nil {
		c.Error(err) // write the response now, so the status below is the one sent
	}
	status := c.Response().Status
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if id := createdJobID(c); id != "" {
		span.SetAttributes(attribute.String("jobsd.job.id", id))
	}
	// A 4xx is the client's mistake, not the server's: the conventions mark
	// only 5xx server spans as errors.
	if status >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	return nil
}

// spanMethod is the method as the conventions want it: one of the known
// methods, or "_OTHER" (a client may send any token).
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func scheme(req *http.Request) string {
	if req.TLS != nil {
		return "https"
	}
	return "http"
}

// jobIDOf is the job a request is about, for its log line: the {id} path
// parameter when it is a UUID, or the job a creation made (its Location
// header); "" for other requests.
func jobIDOf(c echo.Context) string {
	if id := c.Param("id"); uuidform.IsCanonical(id) {
		return strings.ToLower(id)
	}
	return createdJobID(c)
}

// createdJobID is the id of the job a successful creation made, read from
// the Location header it answered with; "" for any other answer.
func createdJobID(c echo.Context) string {
	if c.Response().Status != http.StatusAccepted {
		return ""
	}
	id, ok := strings.CutPrefix(c.Response().Header().Get(echo.HeaderLocation), "/api/jobs/")
	if !ok || !uuidform.IsCanonical(id) {
		return ""
	}
	return id
}
