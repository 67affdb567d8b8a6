package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RouteUnmatched is the route label of requests that matched no route (the
// router's 404): their paths are whatever a client or a scanner sent.
const RouteUnmatched = "unmatched"

// The kind label of jobsd_http_open_streams.
const (
	// StreamLongPoll is GET /api/jobs/{id} with waitSeconds > 0.
	StreamLongPoll = "long_poll"
	// StreamEvents is GET /api/jobs/{id}/events.
	StreamEvents = "events"
)

// httpBuckets span a cached poll (tens of microseconds in process, a
// millisecond or so over a network) to a slow database (the store's 5 s
// statement timeout).
var httpBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// API holds the API process's series: HTTP traffic and the job counters of
// the API. A nil *API records nothing.
type API struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	streams   *prometheus.GaugeVec
	created   *prometheus.CounterVec
	cancelled prometheus.Counter
}

// NewAPI registers the API's series on reg.
func NewAPI(reg prometheus.Registerer) *API {
	a := &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobsd_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template and method; long polls and event streams are not included.",
			Buckets: httpBuckets,
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_http_requests_in_flight",
			Help: "HTTP requests being answered now, not counting long polls and event streams.",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jobsd_http_open_streams",
			Help: "Long polls and event streams open now, by kind (long_poll, events).",
		}, []string{"kind"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_jobs_created_total",
			Help: "Jobs created through the API, by type; idempotent replays are not counted.",
		}, []string{"type"}),
		cancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobsd_jobs_cancelled_total",
			Help: "Unfinished jobs cancelled through the API.",
		}),
	}
	reg.MustRegister(a.requests, a.duration, a.inFlight, a.streams, a.created, a.cancelled)
	// Series that exist from the start make rate() and absent() meaningful
	// before the first request of each kind.
	for _, k := range []string{StreamLongPoll, StreamEvents} {
		a.streams.WithLabelValues(k)
	}
	for _, t := range JobTypes {
		a.created.WithLabelValues(t)
	}
	return a
}

// JobCreated counts a new job of the type (a replay of an Idempotency-Key
// creates nothing and should not be counted).
func (a *API) JobCreated(jobType string) {
	if a == nil {
		return
	}
	a.created.WithLabelValues(typeLabel(jobType)).Inc()
}

// JobCancelled counts a cancellation that ended an unfinished job.
func (a *API) JobCancelled() {
	if a == nil {
		return
	}
	a.cancelled.Inc()
}

// Request starts measuring one request that matched route (a template, or
// RouteUnmatched) and returns what records its end with the status sent.
//
// kind tells long polls and event streams apart (StreamLongPoll,
// StreamEvents, or "" for an ordinary request). Those requests last as long
// as the job takes, so they are counted in jobsd_http_requests_total and as
// open connections in jobsd_http_open_streams, but kept out of the latency
// histogram and the in-flight gauge, where they would drown the requests
// that should be fast. The HTTP layer (impl) calls it from its middleware,
// so that this package links no web framework.
func (a *API) Request(route, method, kind string) (done func(status int)) {
	if a == nil {
		return func(int) {}
	}
	method = methodLabel(method)
	start := time.Now()
	g := a.inFlight
	if kind != "" {
		g = a.streams.WithLabelValues(kind)
	}
	g.Inc()
	return func(status int) {
		g.Dec()
		a.requests.WithLabelValues(route, method, codeLabel(status)).Inc()
		if kind == "" {
			a.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}
	}
}
