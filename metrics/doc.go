// Package metrics is jobsd's Prometheus instrumentation: what the API and the
// worker count, and the small listener that serves it.
//
// Each process owns one *prometheus.Registry (NewRegistry), never the
// library's global default, so that a test can build several processes'
// registries side by side and nothing registered by a dependency leaks in.
// The pieces register themselves on it:
//
//   - API: the HTTP middleware (requests by route template, method and
//     status; latency; requests in flight; long polls and event streams as
//     open connections instead of latencies) and the job counters of the API
//     (jobs created by type, jobs cancelled).
//   - Worker: the calls a worker makes as attempts start and end, jobs are
//     picked up, rescued or killed. Every method of a nil *Worker does
//     nothing, so a worker built without metrics needs no checks.
//   - RegisterQueue: the queue's depth by status and type and the oldest
//     PENDING job's age, read from the database by a capped query over
//     partial indexes at most every QueueStatsTTL, however often Prometheus
//     scrapes.
//   - RegisterDB and RegisterListener: the connection pool's statistics and
//     whether a LISTEN connection is up.
//
// Labels only ever take values from closed sets: the route template as the
// router matched it ("/api/jobs/:id") or "unmatched", a known HTTP method or
// "other", the status code, a job type, an outcome or error class from the
// lists below. A job id, a user or a raw path never becomes a label value:
// each of those would make a new series per request and fill Prometheus.
//
// Listen serves the registry on its own address (JOBS_METRICS_ADDR), apart
// from the API, so that metrics are not exposed to the API's clients, do not
// pass its authentication, and stay reachable when the API is saturated. The
// same listener answers /healthz (200 while the process runs) and /readyz
// (200 when the process's readiness function says so, else 503), which the
// worker, having no API of its own, needs for its orchestrator's probes.
package metrics
