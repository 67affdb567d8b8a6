package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// setting is one environment variable jobsd reads. The table below is the
// one list of them: each command's -h prints its rows after the flags,
// docs/configuration.md is generated from it (writeReference), and
// TestSettingsTable fails when the code reads a variable the table lacks.
type setting struct {
	name string
	// def is the default in words, empty when there is none worth saying.
	def     string
	meaning string
	// commands are the jobsd commands that read it. A variable whose
	// default or meaning differs between commands has one row per group.
	commands []string
	// pending marks a row for a setting the code does not read yet, with
	// the reason; -h leaves it out. The test fails once the code reads it,
	// so that the mark goes and the default is checked when it lands.
	pending string
}

// Command groups that share many rows.
var (
	cmdsAPI     = []string{"serve", "dev"}
	cmdsProcess = []string{"serve", "worker", "dev"}
	cmdsWorker  = []string{"worker", "dev"}
	// cmdsDeliver send webhook events: the APIs, in process, and jobsd
	// deliver.
	cmdsDeliver = []string{"serve", "dev", "deliver"}
	// cmdsRunJobs run job handlers: the worker, and the Lambda function.
	cmdsRunJobs = []string{"worker", "dev", "lambda"}
)

var envSettings = []setting{
	{name: "DATABASE_URL", meaning: "PostgreSQL URL; required (or --database-url)", commands: []string{"serve", "worker", "deliver", "lambda", "migrate"}},
	{name: "DATABASE_URL", def: "a throwaway database", meaning: "PostgreSQL URL to use instead of a throwaway database", commands: []string{"dev"}},
	{name: "JOBS_DB_POOLER", def: "none", meaning: "transaction when DATABASE_URL goes through a pooler in transaction mode (PgBouncer's pool_mode=transaction, RDS Proxy): the pool then prepares nothing and sends each statement in one round trip, relying on no session state; none for a direct connection (or a session-mode pooler), where the hot statements are prepared", commands: []string{"serve", "worker", "deliver", "dev", "lambda"}},
	{name: "JOBS_DIRECT_DATABASE_URL", def: "DATABASE_URL", meaning: "a direct PostgreSQL connection, not through a transaction pooler, for what needs a session: LISTEN (the API's one, the worker's one, jobsd deliver's one) and the migrations' advisory lock; required with JOBS_DB_POOLER=transaction", commands: []string{"serve", "worker", "deliver", "dev", "migrate"}},
	{name: "JOBS_ADDR", def: ":8080", meaning: "listen address (or --addr)", commands: []string{"serve"}},
	{name: "JOBS_ADDR", def: "127.0.0.1:8080", meaning: "listen address (or --addr)", commands: []string{"dev"}},
	{name: "JOBS_ADDR", def: "127.0.0.1:8080", meaning: "address of the jobsd dev whose issuer signs (or --addr)", commands: []string{"token"}},

	{name: "JOBS_DRAIN_DELAY", def: "0s", meaning: "after SIGTERM, how long the API keeps serving while /readyz says 503, so that a load balancer stops sending first; set it above the balancer's health-check interval times its failure threshold", commands: []string{"serve"}},

	{name: "JOBS_AUTH_ISSUER", meaning: "token issuer, e.g. https://cognito-idp.{region}.amazonaws.com/{userPoolId}; required unless the next two are set", commands: []string{"serve"}},
	{name: "JOBS_COGNITO_REGION", meaning: "the issuer's AWS region, with JOBS_COGNITO_USER_POOL_ID instead of JOBS_AUTH_ISSUER", commands: []string{"serve"}},
	{name: "JOBS_COGNITO_USER_POOL_ID", meaning: "the issuer's Cognito user pool id, with JOBS_COGNITO_REGION", commands: []string{"serve"}},
	{name: "JOBS_AUTH_JWKS_URL", def: "issuer + /.well-known/jwks.json", meaning: "where the signing keys are", commands: []string{"serve"}},
	{name: "JOBS_AUTH_CLIENT_IDS", meaning: "comma-separated app client ids whose tokens are accepted; required", commands: []string{"serve"}},
	{name: "JOBS_AUTH_TOKEN_USE", def: "access", meaning: "token_use a token must have: access or id", commands: []string{"serve"}},
	{name: "JOBS_AUTH_ADMIN_GROUP", def: "admin", meaning: "cognito:groups value that may use /api/admin/...", commands: []string{"serve"}},

	{name: "JOBS_UI_CLIENT_ID", def: "off", meaning: "the operator console's OAuth client (a Cognito app client without a secret, with the authorization code grant); must be one of JOBS_AUTH_CLIENT_IDS; with JOBS_UI_BASE_URL it turns the console on at /ui/", commands: []string{"serve"}},
	{name: "JOBS_UI_BASE_URL", meaning: "the console's public origin, e.g. https://jobs.example.com; its redirect URI is this + /ui/callback", commands: []string{"serve"}},
	{name: "JOBS_UI_BASE_URL", def: "http:// + the listen address", meaning: "the console's origin; its redirect URI is this + /ui/callback", commands: []string{"dev"}},
	{name: "JOBS_DEV_ISSUER_ADDR", def: "none: the issuer is served under /dev-issuer of the API", meaning: "serve the dev issuer (sign-in, token, keys) on a listener of its own, another origin as Cognito's is", commands: []string{"dev", "token"}},

	{name: "JOBS_CORS_ORIGINS", def: "none, so CORS is off", meaning: "comma-separated browser origins allowed", commands: cmdsAPI},
	{name: "JOBS_MAX_BODY_BYTES", def: "8388608", meaning: "request body limit (413 above it)", commands: cmdsAPI},
	{name: "JOBS_MAX_ATTEMPTS", def: "3", meaning: "processing attempts a new job gets (1..25)", commands: cmdsAPI},
	{name: "JOBS_DB_MAX_CONNS", def: "20", meaning: "connection pool size", commands: []string{"serve", "worker", "deliver", "dev"}},
	{name: "JOBS_DB_MAX_CONNS", def: "2", meaning: "connection pool size of one function instance (it runs one batch at a time)", commands: []string{"lambda"}},
	{name: "JOBS_DB_READ_BATCHES", def: "2", meaning: "most status reads in flight at once, each on a connection of the status reads' own pool (beside JOBS_DB_MAX_CONNS, opened by the first poll that reads the database): one, and another only beside one that has run for 5 ms (slow or stuck); reads that arrive meanwhile queue and leave together in one statement", commands: cmdsAPI},
	{name: "JOBS_READ_DATABASE_URL", def: "none: every read goes to DATABASE_URL", meaning: "comma-separated PostgreSQL URLs of streaming replicas of DATABASE_URL; users' status polls, long polls, event streams and lists read from them (each with a pool of JOBS_DB_MAX_CONNS), falling back to the primary whenever a replica lacks the job, has an older version than the client has seen, is further behind than JOBS_READ_MAX_LAG, or fails; writes and operators' reads use DATABASE_URL", commands: []string{"serve"}},
	{name: "JOBS_READ_MAX_LAG", def: "1s", meaning: "how far behind the primary a replica may be and still serve reads (measured from WAL positions every quarter of it, at most every second); a list may be this far behind", commands: []string{"serve"}},
	{name: "JOBS_RATE_READ", def: "50", meaning: "per-user reads (GET) per second across the deployment (each of N API processes allows its share); 0 turns the limit off", commands: cmdsAPI},
	{name: "JOBS_RATE_READ_BURST", def: "100", meaning: "burst of per-user reads across the deployment", commands: cmdsAPI},
	{name: "JOBS_RATE_CREATE", def: "5", meaning: "per-user creations and cancellations (POST) per second across the deployment; 0 turns the limit off", commands: cmdsAPI},
	{name: "JOBS_RATE_CREATE_BURST", def: "20", meaning: "burst of per-user creations and cancellations across the deployment", commands: cmdsAPI},
	{name: "JOBS_USER_WAITERS", def: "20", meaning: "per-user open long polls that wait and event streams across the deployment (429 above it); 0 turns the cap off", commands: cmdsAPI},
	{name: "JOBS_RATE_AUTH_FAIL", def: "20", meaning: "failed authentications per second per client address, per API process; past the burst a request is a 429 before its token is checked; 0 turns the limit off", commands: cmdsAPI},
	{name: "JOBS_RATE_AUTH_FAIL_BURST", def: "40", meaning: "burst of failed authentications per client address", commands: cmdsAPI},
	{name: "JOBS_TRUSTED_PROXIES", def: "none: the peer is the client", meaning: "comma-separated address ranges (CIDR, e.g. 10.0.0.0/8; a bare address is a range of one) of proxies whose X-Forwarded-For names the client address", commands: cmdsAPI},
	{name: "JOBS_RETENTION", def: "720h (30 days)", meaning: "how long finished jobs are kept; 0 keeps them for ever; the worker deletes older ones, the API's cache never serves them", commands: cmdsProcess},
	{name: "JOBS_RETENTION", def: "720h (30 days)", meaning: "how long finished jobs are kept; 0 keeps them for ever; the scheduled maintenance round deletes older ones", commands: []string{"lambda"}},

	{name: "JOBS_WEBHOOK_DELIVERY", def: "on", meaning: "whether this API process sends webhook events (docs/webhooks.md); any number of API processes and jobsd deliver processes may, they share the work. On cores shared with the worker or PostgreSQL, set it off on the APIs and run jobsd deliver, which yields the CPU", commands: cmdsAPI},
	{name: "JOBS_WEBHOOK_NICE", def: "10", meaning: "how much jobsd deliver lowers its CPU priority at start, added to the nice value it starts with (at most 19; every thread, on Linux; elsewhere, or when it fails, a warning and no change); 0 keeps the priority. A busy machine then runs the worker and PostgreSQL first, and delivery catches up after", commands: []string{"deliver"}},
	{name: "JOBS_WEBHOOK_ALLOW_PRIVATE", def: "false", meaning: "allow webhook URLs that are plain http or reach private, loopback or link-local addresses; for development and tests only", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_KEY", def: "none: secrets stored unencrypted, with a warning", meaning: "base64 of 32 bytes: the AES-256-GCM key that seals webhook signing secrets in the database; every API and jobsd deliver process needs the same", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_TIMEOUT", def: "15s", meaning: "bound of one webhook delivery attempt", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_RETRY_SCHEDULE", def: "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h,24h", meaning: "wait before each retry of a failed webhook delivery (±20% jitter); after the last the delivery is FAILED (about 2.9 days by default)", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_CONCURRENCY", def: "32", meaning: "webhook delivery attempts in flight per sending process (an API or jobsd deliver)", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_PER_ENDPOINT", def: "4", meaning: "webhook delivery attempts in flight per endpoint per sending process", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_DISABLE_AFTER", def: "72h", meaning: "an endpoint whose delivery attempts have all failed for this long (and at least JOBS_WEBHOOK_DISABLE_MIN_FAILURES of them) is disabled, with the reason shown to its owner", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_DISABLE_MIN_FAILURES", def: "10", meaning: "the fewest consecutive failed attempts that disable an endpoint", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_MAX_RESULT_BYTES", def: "262144", meaning: "a job whose result is larger is sent in webhook events without it (\"resultOmitted\": true)", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_POLL", def: "1s", meaning: "how often the delivery loop looks for due deliveries besides its LISTEN wake-ups", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_YIELD_BACKLOG", def: "1000", meaning: "while at least this many jobs are due and unclaimed (the worker burning a backlog down), the webhook delivery loop claims no events, so its database work does not slow the burn-down; it delivers anyway what has waited JOBS_WEBHOOK_YIELD_MAX. 0 never yields", commands: cmdsDeliver},
	{name: "JOBS_WEBHOOK_YIELD_MAX", def: "30s", meaning: "the longest a webhook event waits for a backlog to go before it is delivered anyway: what yielding adds to an event's delay at most", commands: cmdsDeliver},

	{name: "JOBS_DISPATCH", def: "listen", meaning: "how workers learn of new jobs: listen (they claim from the table, woken by LISTEN/NOTIFY) or sqs (an outbox row per job, written with it, sent to JOBS_SQS_QUEUE_URL for jobsd lambda)", commands: []string{"serve"}},
	{name: "JOBS_SQS_QUEUE_URL", meaning: "the job queue's URL; required with JOBS_DISPATCH=sqs", commands: []string{"serve"}},
	{name: "JOBS_SQS_QUEUE_URL", meaning: "the job queue's URL, where retries are sent with their backoff as DelaySeconds; required", commands: []string{"lambda"}},
	{name: "JOBS_SQS_ENDPOINT", def: "the region's", meaning: "SQS endpoint override, e.g. a local SQS; credentials and region come from the AWS default chain", commands: []string{"serve", "lambda"}},
	{name: "JOBS_OUTBOX_SWEEP", def: "10s", meaning: "with JOBS_DISPATCH=sqs, how often the API sends outbox rows another process left unsent (its own are sent at once)", commands: []string{"serve"}},
	{name: "AWS_LAMBDA_RUNTIME_API", def: "set by Lambda", meaning: "the Lambda Runtime API's address; jobsd lambda runs only where it is set (in Lambda, or under the Runtime Interface Emulator)", commands: []string{"lambda"}},
	{name: "JOBS_LAMBDA_CAP_DELAY", def: "30s", meaning: "with JOBS_USER_CONCURRENCY, how long the message of a job whose user is at the cap waits before it comes back (sent again with this DelaySeconds; at most 15m)", commands: []string{"lambda"}},
	{name: "JOBS_LAMBDA_RESERVE", def: "5s", meaning: "time kept before the invocation's deadline to write outcomes: attempts end that much before it", commands: []string{"lambda"}},
	{name: "JOBS_METRICS_ADDR", def: "off; dev: a free 127.0.0.1 port", meaning: "where Prometheus /metrics, /healthz and /readyz are served; keep it on a private address", commands: []string{"serve", "worker", "deliver", "dev"}},
	{name: "JOBS_LOG_LEVEL", def: "info", meaning: "debug, info, warn or error (JSON lines on stderr)", commands: []string{"serve", "worker", "deliver", "dev", "lambda"}},
	{name: "JOBS_PPROF_ADDR", def: "off", meaning: "serves Go's profiler there, e.g. 127.0.0.1:6060; keep it on a loopback or private address", commands: []string{"serve", "worker", "deliver", "lambda"}},
	{name: "JOBS_DEV_KEY", def: "user config dir/jobsd/dev-issuer.pem", meaning: "the dev issuer's signing key file", commands: []string{"dev", "token"}},
	{name: "JOBS_TEST_POSTGRES_IMAGE", def: "postgres:15", meaning: "container image when the throwaway database needs a container", commands: []string{"dev"}},

	{name: "JOBS_MODEL_PROVIDER", def: "local", meaning: "local, bedrock or openai", commands: cmdsRunJobs},
	{name: "JOBS_MODEL_ID", def: "the provider's; Bedrock: anthropic.claude-3-haiku-20240307-v1:0", meaning: "default model id", commands: cmdsRunJobs},
	{name: "AWS_REGION", def: "the AWS default chain's", meaning: "Bedrock region; credentials always come from the AWS default chain", commands: cmdsRunJobs},
	{name: "JOBS_BEDROCK_ENDPOINT", meaning: "Bedrock endpoint override", commands: cmdsRunJobs},
	{name: "JOBS_OPENAI_BASE_URL", meaning: "OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1", commands: cmdsRunJobs},
	{name: "JOBS_OPENAI_API_KEY", meaning: "its bearer token, if it wants one", commands: cmdsRunJobs},

	{name: "JOBS_WORKER_CONCURRENCY", def: "8", meaning: "jobs one worker runs at once", commands: cmdsWorker},
	{name: "JOBS_USER_CONCURRENCY", def: "0", meaning: "at most this many of one user's jobs run at once across every worker and Lambda instance (0: no cap); each claim counts the user's leased jobs, and capped claims run one at a time (an advisory lock); set the same on every one", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_LEASE", def: "30s", meaning: "lease of a claim; a dead worker's jobs are rescued after it", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_HEARTBEAT", def: "lease/3", meaning: "how often leases are extended", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_RESCUE_EVERY", def: "lease/2", meaning: "how often expired leases are looked for", commands: cmdsWorker},
	{name: "JOBS_WORKER_POLL", def: "2s", meaning: "fallback poll when no notification arrives", commands: cmdsWorker},
	{name: "JOBS_WORKER_BACKOFF_BASE", def: "1s", meaning: "first retry delay; it doubles per attempt, jittered", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_BACKOFF_MAX", def: "1m", meaning: "cap of the retry delay", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_JOB_TIMEOUT", def: "5m", meaning: "one attempt's deadline", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_SHUTDOWN_WAIT", def: "20s", meaning: "how long in-flight jobs may finish after SIGTERM", commands: cmdsWorker},
	{name: "JOBS_PARSE_TIMEOUT", def: "30s", meaning: "wall-clock budget of one PDF or DOCX parse, in a child process killed at it", commands: cmdsRunJobs},
	{name: "JOBS_PARSE_MEMORY", def: "512MiB", meaning: "resident memory one parse child may use (bytes, or KiB, MiB, GiB); it is killed above it", commands: cmdsRunJobs},
	{name: "JOBS_PARSE_CONCURRENCY", def: "2", meaning: "PDF and DOCX parses one worker runs at once; further parses wait for a slot", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_GRACE", def: "2s", meaning: "how long a handler may take to return after its deadline or a cancellation before the watchdog abandons it", commands: cmdsRunJobs},
	{name: "JOBS_WORKER_MAX_STUCK", def: "(concurrency+1)/2", meaning: "abandoned handlers still running beyond which the worker exits for its supervisor", commands: cmdsWorker},
	{name: "JOBS_WORKER_CRASH_MARKERS", def: "false; true in jobsd dev", meaning: "lets the [[simulate:crash]] markers kill the worker process; for tests and jobsd dev only", commands: cmdsRunJobs},
	{name: "GORACE", def: "Go's", meaning: "race-detector builds only: passed on to parse children, which skip its exit delay", commands: cmdsRunJobs},
	{name: "GOGC", def: "400; Go's own is 100", meaning: "Go's GC target; the worker raises the default because its live heap is tiny", commands: []string{"worker"}},

	{name: "OTEL_EXPORTER_OTLP_ENDPOINT", def: "unset, so tracing is off", meaning: "OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318; setting it (or the next) turns traces on", commands: cmdsProcess},
	{name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", meaning: "OTLP/HTTP URL for traces alone, e.g. http://127.0.0.1:4318/v1/traces", commands: cmdsProcess},
	{name: "OTEL_SDK_DISABLED", def: "false", meaning: "true turns tracing off whatever the endpoint", commands: cmdsProcess},
	{name: "OTEL_TRACES_EXPORTER", def: "otlp", meaning: "none turns tracing off whatever the endpoint", commands: cmdsProcess},
	{name: "OTEL_TRACES_SAMPLER", def: "parentbased_always_on", meaning: "which traces are sampled: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio (the SDK's names; jobsd asks the sampler before it builds a span); another name is logged and read as the default", commands: cmdsProcess},
	{name: "OTEL_TRACES_SAMPLER_ARG", def: "1", meaning: "the ratio of the *traceidratio samplers, 0 to 1; in production at thousands of jobs a second, parentbased_traceidratio with 0.01", commands: cmdsProcess},
}

// envGroups are variables that a library reads for jobsd, listed in -h as
// one row each: the drift test cannot see them being read.
var envGroups = []setting{
	{name: "OTEL_*", meaning: "with tracing on, the OpenTelemetry SDK and exporter read the standard variables: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE, OTEL_BSP_*", commands: cmdsProcess},
}

// printSettings writes the rows that command reads, in the layout of
// flag.PrintDefaults so that the two lists read as one.
func printSettings(w io.Writer, command string) {
	header := false
	for _, s := range slices.Concat(envSettings, envGroups) {
		if s.pending != "" || !slices.Contains(s.commands, command) {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nEnvironment (flags win over it):")
			header = true
		}
		fmt.Fprintf(w, "  %s\n    \t%s", s.name, s.meaning)
		if s.def != "" {
			fmt.Fprintf(w, " (default: %s)", s.def)
		}
		fmt.Fprintln(w)
	}
}

// parseFlags parses a command's flags, with a usage text that lists its
// flags and then the environment variables it reads. -h is not an error:
// it returns flag.ErrHelp, on which main exits 0.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.Usage = func() {
		out := fs.Output()
		synopsis := "[flags]"
		switch fs.Name() {
		case "migrate":
			synopsis = "[flags] up|down|status"
		case "token":
			synopsis = "--sub USER [--admin] [--ttl 1h]"
		}
		fmt.Fprintf(out, "usage: jobsd %s %s\n\nFlags:\n", fs.Name(), synopsis)
		fs.PrintDefaults()
		printSettings(out, fs.Name())
	}
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usagef("%v", err)
}

// writeReference writes docs/configuration.md: every row of the table, in
// its order, with the commands that read it. `make docs` rewrites the file
// and TestConfigurationReference fails when it differs, so the reference
// cannot drift from the code.
func writeReference(w io.Writer) {
	fmt.Fprint(w, `# Configuration reference

<!-- Generated by `+"`make docs`"+` from cmd/jobsd/settings.go; do not edit. -->

Every environment variable a jobsd command reads, with its default. Flags win
over the environment; a bad or missing setting stops start-up with a message
that names it. `+"`jobsd <command> -h`"+` prints the same rows for one command.
How the settings work together is in [operating.md](operating.md).

| Variable | Commands | Default | Meaning |
|---|---|---|---|
`)
	for _, s := range slices.Concat(envSettings, envGroups) {
		if s.pending != "" {
			continue
		}
		def := s.def
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", s.name, strings.Join(s.commands, ", "), markdownCell(def), markdownCell(s.meaning))
	}
}

// markdownCell keeps a table cell one cell: a "|" would end it.
func markdownCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
