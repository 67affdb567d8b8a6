package metrics

import (
	"strings"
	"time"

	"github.com/jobsd/jobsd/job"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an attempt, the outcome label of jobsd_attempts_total.
const (
	OutcomeCompleted  = "completed"   // the job is COMPLETED
	OutcomeRetried    = "retried"     // a retryable error; the job waits for its next attempt
	OutcomeFailed     = "failed"      // the job is FAILED (permanent error, or the last attempt)
	OutcomeHandedBack = "handed_back" // the worker shut down and returned the job uncounted
	OutcomeLost       = "lost"        // the lease was taken over or the job cancelled; nothing written
	OutcomeTimedOut   = "timed_out"   // the attempt hit JOBS_WORKER_JOB_TIMEOUT
)

var outcomeSet = setOf([]string{OutcomeCompleted, OutcomeRetried, OutcomeFailed, OutcomeHandedBack, OutcomeLost, OutcomeTimedOut})

// Error classes, the error_class label of jobsd_attempts_total: the
// client error catalogue (jobtype/doc.go) folded into a few classes that an
// operator acts on differently.
const (
	ErrorNone          = "none"           // the attempt did not fail
	ErrorThrottled     = "throttled"      // the model provider throttled us
	ErrorModelAPI      = "model_api"      // any other model provider error
	ErrorInvalidOutput = "invalid_output" // the model answered, but not as asked
	ErrorInvalidInput  = "invalid_input"  // the job's input is unusable
	ErrorReference     = "reference"      // a referenced job is missing or another user's
	ErrorTimeout       = "timeout"        // the attempt's deadline passed
	ErrorCancelled     = "cancelled"      // the user cancelled the job
	ErrorLost          = "lost"           // the worker lost the job (lease expired)
	ErrorInternal      = "internal"       // a bug or an unexpected error
)

var errorClassSet = setOf([]string{ErrorNone, ErrorThrottled, ErrorModelAPI, ErrorInvalidOutput,
	ErrorInvalidInput, ErrorReference, ErrorTimeout, ErrorCancelled, ErrorLost, ErrorInternal})

// ErrorClass returns class when it is one of the Error* constants, else
// Other; "" is ErrorNone.
func ErrorClass(class string) string {
	if class == "" {
		return ErrorNone
	}
	return oneOf(errorClassSet, class)
}

// ErrorClassOf maps a failed attempt's client message (the catalogue text
// jobtype.Classify returns, which the job's error column stores) to its
// class. An empty message is ErrorNone; a text outside the catalogue is
// Other.
func ErrorClassOf(clientMessage string) string {
	m := clientMessage
	switch {
	case m == "":
		return ErrorNone
	case strings.HasPrefix(m, "Bedrock API error: ThrottlingException"),
		strings.HasPrefix(m, "Model API error: 429"):
		return ErrorThrottled
	case strings.HasPrefix(m, "Bedrock API error:"), strings.HasPrefix(m, "Model API error:"):
		return ErrorModelAPI
	case strings.HasPrefix(m, "Invalid model output"):
		return ErrorInvalidOutput
	case strings.HasPrefix(m, "Invalid input"):
		return ErrorInvalidInput
	case strings.HasPrefix(m, "Referenced job"):
		return ErrorReference
	case strings.HasPrefix(m, job.ErrTextTimedOut):
		return ErrorTimeout
	case m == job.ErrTextCancelled, m == job.ErrTextCancelledByAdmin:
		return ErrorCancelled
	case m == job.ErrTextWorkerLost:
		return ErrorLost
	case strings.HasPrefix(m, "Internal error"):
		return ErrorInternal
	}
	return Other
}

// Reasons a document parse was killed, the reason label of
// jobsd_parse_kills_total.
const (
	KillTimeout   = "timeout"
	KillMemory    = "memory"
	KillCPU       = "cpu"
	KillCancelled = "cancelled"
	KillOutput    = "output" // the child wrote more than a result may be
)

var killSet = setOf([]string{KillTimeout, KillMemory, KillCPU, KillCancelled, KillOutput})

// The result label of jobsd_rescues_total.
const (
	RescueRetried = "retried" // an expired lease's job went back to the queue
	RescueFailed  = "failed"  // it had no attempts left: FAILED, "Worker lost"
)

// Buckets: an attempt runs from milliseconds (local provider) to minutes
// (a large document through a model; JOBS_WORKER_JOB_TIMEOUT is 5 m);
// pickup is milliseconds when workers keep up and minutes in a backlog.
var (
	attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	pickupBuckets  = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// Worker holds a worker process's series. Every method of a nil *Worker
// does nothing, so code and tests that build a worker without metrics need
// no checks.
type Worker struct {
	started  *prometheus.CounterVec
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	pickup   *prometheus.HistogramVec
	rescues  *prometheus.CounterVec
	kills    *prometheus.CounterVec
	inFlight prometheus.Gauge
	// byType holds each job type's series, resolved once: an attempt
	// updates four of them, and WithLabelValues hashes its labels under a
	// lock on every call. other counts the types outside JobTypes.
	byType map[string]*Attempts
	other  *Attempts
}

// typeSeries are one job type's series that every attempt updates.
type typeSeries struct {
	label     string
	started   prometheus.Counter
	completed prometheus.Counter // jobsd_attempts_total{outcome="completed",error_class="none"}
	duration  prometheus.Observer
	pickup    prometheus.Observer
}

// NewWorker registers the worker's series on reg.
func NewWorker(reg prometheus.Registerer) *Worker {
	w := &Worker{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_attempts_started_total",
			Help: "Attempts started, by job type.",
		}, []string{"type"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_attempts_total",
			Help: "Attempts ended, by job type, outcome and error class.",
		}, []string{"type", "outcome", "error_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobsd_attempt_duration_seconds",
			Help:    "How long an attempt ran, by job type.",
			Buckets: attemptBuckets,
		}, []string{"type"}),
		pickup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobsd_pickup_latency_seconds",
			Help:    "Time from a job's creation to its first claim, by job type.",
			Buckets: pickupBuckets,
		}, []string{"type"}),
		rescues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_rescues_total",
			Help: "Jobs whose lease expired, found by the rescuer: returned to the queue (retried) or failed.",
		}, []string{"result"}),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_parse_kills_total",
			Help: "Document parses killed, by reason (timeout, memory, cpu, cancelled).",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_worker_jobs_in_flight",
			Help: "Jobs this worker is running now.",
		}),
	}
	reg.MustRegister(w.started, w.attempts, w.duration, w.pickup, w.rescues, w.kills, w.inFlight)
	for _, r := range []string{RescueRetried, RescueFailed} {
		w.rescues.WithLabelValues(r)
	}
	for _, k := range []string{KillTimeout, KillMemory, KillCPU, KillCancelled, KillOutput} {
		w.kills.WithLabelValues(k)
	}
	w.byType = map[string]*Attempts{}
	for _, t := range JobTypes {
		// The failure-ratio alert divides failed by all attempts; both
		// series should exist before the first failure.
		w.byType[t] = &Attempts{w: w, s: w.newTypeSeries(t)}
	}
	w.other = &Attempts{w: w}
	return w
}

// newTypeSeries resolves (and so creates) t's series.
func (w *Worker) newTypeSeries(t string) *typeSeries {
	return &typeSeries{
		label:     t,
		started:   w.started.WithLabelValues(t),
		completed: w.attempts.WithLabelValues(t, OutcomeCompleted, ErrorNone),
		duration:  w.duration.WithLabelValues(t),
		pickup:    w.pickup.WithLabelValues(t),
	}
}

// Attempts are one job type's attempt series, resolved once: a worker
// looks them up when an attempt starts, and updates them at its start and
// end without a lookup by type each time. Every method of a nil *Attempts
// does nothing.
type Attempts struct {
	w *Worker
	// s are the type's series; nil for the types outside JobTypes, counted
	// as Other through WithLabelValues: a bug, whose series should not
	// exist before it happens.
	s *typeSeries
}

// Attempts returns jobType's attempt series; nil for a nil Worker.
func (w *Worker) Attempts(jobType string) *Attempts {
	if w == nil {
		return nil
	}
	if a := w.byType[jobType]; a != nil {
		return a
	}
	return w.other
}

// Started counts an attempt beginning.
func (a *Attempts) Started() {
	if a == nil {
		return
	}
	if a.s != nil {
		a.s.started.Inc()
		return
	}
	a.w.started.WithLabelValues(Other).Inc()
}

// Ended counts an attempt's end and its duration d. outcome is one of the
// Outcome* constants; errorClass one of the Error* constants ("" for none;
// ErrorClassOf derives it from the client message). Values outside those
// sets are counted as Other.
func (a *Attempts) Ended(outcome, errorClass string, d time.Duration) {
	if a == nil {
		return
	}
	w := a.w
	if a.s == nil {
		w.attempts.WithLabelValues(Other, oneOf(outcomeSet, outcome), ErrorClass(errorClass)).Inc()
		w.duration.WithLabelValues(Other).Observe(d.Seconds())
		return
	}
	if outcome == OutcomeCompleted && (errorClass == "" || errorClass == ErrorNone) {
		a.s.completed.Inc()
	} else {
		w.attempts.WithLabelValues(a.s.label, oneOf(outcomeSet, outcome), ErrorClass(errorClass)).Inc()
	}
	a.s.duration.Observe(d.Seconds())
}

// Pickup records how long a job waited from creation to its first claim.
// Call it for first attempts only: a retry waits for its backoff, which is
// not pickup latency.
func (a *Attempts) Pickup(d time.Duration) {
	if a == nil {
		return
	}
	if d < 0 { // the database's and this host's clocks disagree
		d = 0
	}
	if a.s != nil {
		a.s.pickup.Observe(d.Seconds())
		return
	}
	a.w.pickup.WithLabelValues(Other).Observe(d.Seconds())
}

// Rescued counts one rescuer pass's results: jobs returned to the queue and
// jobs failed for having no attempts left.
func (w *Worker) Rescued(retried, failed int) {
	if w == nil {
		return
	}
	if retried > 0 {
		w.rescues.WithLabelValues(RescueRetried).Add(float64(retried))
	}
	if failed > 0 {
		w.rescues.WithLabelValues(RescueFailed).Add(float64(failed))
	}
}

// ParseKilled counts a document parse killed for reason (one of the Kill*
// constants; anything else is Other).
func (w *Worker) ParseKilled(reason string) {
	if w == nil {
		return
	}
	w.kills.WithLabelValues(oneOf(killSet, reason)).Inc()
}

// SetInFlight sets how many jobs the worker is running now.
func (w *Worker) SetInFlight(n int) {
	if w == nil {
		return
	}
	w.inFlight.Set(float64(n))
}
