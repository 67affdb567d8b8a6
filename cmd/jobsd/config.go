package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envInt reads an integer setting, naming it when it is not one.
func envInt(name string, def int) (int, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, usagef("%s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

// envDuration reads a duration setting ("30s", "5m"), naming it when invalid.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, usagef("%s=%q is not a duration such as 30s", name, v)
	}
	return d, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newLogger writes JSON lines to stderr at JOBS_LOG_LEVEL (debug, info, warn, error).
func newLogger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("JOBS_LOG_LEVEL", "info"))); err != nil {
		return nil, usagef("JOBS_LOG_LEVEL=%q is not one of debug, info, warn, error", os.Getenv("JOBS_LOG_LEVEL"))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// dbFlags are the database settings shared by serve, worker, lambda and
// migrate: url (DATABASE_URL) carries the pool's statements, and direct
// (JOBS_DIRECT_DATABASE_URL, else url) what needs a session of its own:
// LISTEN and the migrations' advisory lock. pooler
// (JOBS_DB_POOLER=transaction) says url goes through a pooler in
// transaction mode, through which the store keeps no session state.
type dbFlags struct {
	url    string
	direct string
	pooler bool
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.url, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
}

// The values of JOBS_DB_POOLER.
const (
	poolerNone        = "none"        // DATABASE_URL is a direct connection (or a session-mode pooler)
	poolerTransaction = "transaction" // DATABASE_URL goes through a pooler in transaction mode
)

func (d *dbFlags) check() error {
	if d.url == "" {
		return usagef("DATABASE_URL (or --database-url) is required")
	}
	d.direct = envOr("JOBS_DIRECT_DATABASE_URL", d.url)
	return nil
}

// readPooler reads JOBS_DB_POOLER into d.pooler.
func (d *dbFlags) readPooler() error {
	switch v := envOr("JOBS_DB_POOLER", poolerNone); v {
	case poolerNone, "":
		d.pooler = false
	case poolerTransaction:
		d.pooler = true
	default:
		return usagef("JOBS_DB_POOLER=%q must be %s or %s", v, poolerNone, poolerTransaction)
	}
	return nil
}

// requireDirect fails a process that LISTENs when its pool goes through a
// transaction pooler without a direct URL: LISTEN through the pooler
// would register on whichever server connection ran it, and the
// notifications would go to whoever holds that connection next.
func (d *dbFlags) requireDirect() error {
	if d.pooler && d.direct == d.url {
		return usagef("JOBS_DB_POOLER=%s needs JOBS_DIRECT_DATABASE_URL, a direct connection for LISTEN (DATABASE_URL goes through the pooler)", poolerTransaction)
	}
	return nil
}

// storeOptions are the pool's options that follow from the settings.
func (d *dbFlags) storeOptions(o store.Options) store.Options {
	o.Pooler = d.pooler
	return o
}

// openStore opens the pool of a process that sets nothing of it but its
// size, JOBS_DB_MAX_CONNS (the worker, jobsd deliver).
func (d *dbFlags) openStore(ctx context.Context) (*store.Store, error) {
	conns, err := envInt("JOBS_DB_MAX_CONNS", job.DefaultDBConns)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, d.url, d.storeOptions(store.Options{MaxOpenConns: conns}))
}

// startProcess is the common start of serve, worker and lambda: it parses
// fs (with the database flag added), checks the database settings, and makes
// the logger, starting the profiler when JOBS_PPROF_ADDR asks for it.
func startProcess(fs *flag.FlagSet, args []string) (dbFlags, *slog.Logger, error) {
	var db dbFlags
	db.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return db, nil, err
	}
	if err := db.check(); err != nil {
		return db, nil, err
	}
	if err := db.readPooler(); err != nil {
		return db, nil, err
	}
	log, err := newLogger()
	if err != nil {
		return db, nil, err
	}
	startPprof(log)
	return db, log, nil
}

// authConfig reads the token verification settings. The issuer is either
// given whole or made from the Cognito region and user pool id.
func authConfig() (auth.Config, error) {
	issuer := os.Getenv("JOBS_AUTH_ISSUER")
	region, pool := os.Getenv("JOBS_COGNITO_REGION"), os.Getenv("JOBS_COGNITO_USER_POOL_ID")
	if issuer == "" && region != "" && pool != "" {
		issuer = fmt.Sprintf("https://cognito-idp.%s.amazonaws.com/%s", region, pool)
	}
	if issuer == "" {
		return auth.Config{}, usagef("JOBS_AUTH_ISSUER (or JOBS_COGNITO_REGION and JOBS_COGNITO_USER_POOL_ID) is required")
	}
	clients := splitList(os.Getenv("JOBS_AUTH_CLIENT_IDS"))
	if len(clients) == 0 {
		return auth.Config{}, usagef("JOBS_AUTH_CLIENT_IDS is required: the app client ids whose tokens are accepted")
	}
	tokenUse := envOr("JOBS_AUTH_TOKEN_USE", auth.TokenUseAccess)
	if tokenUse != auth.TokenUseAccess && tokenUse != auth.TokenUseID {
		return auth.Config{}, usagef("JOBS_AUTH_TOKEN_USE=%q must be access or id", tokenUse)
	}
	return auth.Config{
		Issuer:     issuer,
		JWKSURL:    os.Getenv("JOBS_AUTH_JWKS_URL"),
		ClientIDs:  clients,
		TokenUse:   tokenUse,
		AdminGroup: envOr("JOBS_AUTH_ADMIN_GROUP", auth.DefaultAdminGroup),
	}, nil
}

// apiSettings are the API's tunables beside auth.
type apiSettings struct {
	corsOrigins  []string
	maxBodyBytes int
	maxAttempts  int
	dbMaxConns   int
	readBatches  int
	readLimit    impl.RateLimit
	retention    time.Duration
	createLimit  impl.RateLimit
	userWaiters  int
	authFail     impl.RateLimit
	trusted      []*net.IPNet
	// readURLs are JOBS_READ_DATABASE_URL's replicas, within maxLag.
	readURLs []string
	maxLag   time.Duration
	webhooks webhookSettings
	// replicas is serve's entry in the registry of live API processes
	// (not a setting: serve sets it); nil counts this process alone.
	replicas *impl.Replicas
}

func readAPISettings() (apiSettings, error) {
	var s apiSettings
	var err error
	s.corsOrigins = splitList(os.Getenv("JOBS_CORS_ORIGINS"))
	if s.maxBodyBytes, err = envInt("JOBS_MAX_BODY_BYTES", job.DefaultMaxBodyBytes); err != nil {
		return s, err
	}
	if s.maxAttempts, err = envInt("JOBS_MAX_ATTEMPTS", job.DefaultMaxAttempts); err != nil {
		return s, err
	}
	if s.maxAttempts < 1 || s.maxAttempts > 25 {
		return s, usagef("JOBS_MAX_ATTEMPTS=%d must be between 1 and 25", s.maxAttempts)
	}
	if s.dbMaxConns, err = envInt("JOBS_DB_MAX_CONNS", job.DefaultDBConns); err != nil {
		return s, err
	}
	if s.readBatches, err = envInt("JOBS_DB_READ_BATCHES", 2); err != nil {
		return s, err
	}
	if s.readBatches < 1 || s.readBatches > s.dbMaxConns {
		return s, usagef("JOBS_DB_READ_BATCHES=%d must be between 1 and JOBS_DB_MAX_CONNS (%d)", s.readBatches, s.dbMaxConns)
	}
	if s.readLimit, err = envRate("JOBS_RATE_READ", 50, 100); err != nil {
		return s, err
	}
	if s.createLimit, err = envRate("JOBS_RATE_CREATE", 5, 20); err != nil {
		return s, err
	}
	if s.userWaiters, err = envInt("JOBS_USER_WAITERS", 20); err != nil {
		return s, err
	}
	if s.authFail, err = envRate("JOBS_RATE_AUTH_FAIL", 20, 40); err != nil {
		return s, err
	}
	if s.trusted, err = envCIDRs("JOBS_TRUSTED_PROXIES"); err != nil {
		return s, err
	}
	if s.retention, err = envRetention(); err != nil {
		return s, err
	}
	s.readURLs = splitList(os.Getenv("JOBS_READ_DATABASE_URL"))
	if s.maxLag, err = envDuration("JOBS_READ_MAX_LAG", store.DefaultMaxLag); err != nil {
		return s, err
	}
	if s.maxLag <= 0 {
		return s, usagef("JOBS_READ_MAX_LAG must be more than 0")
	}
	if s.webhooks, err = readWebhookSettings(); err != nil {
		return s, err
	}
	return s, nil
}

// envCIDRs reads a comma-separated list of address ranges ("10.0.0.0/8,
// fd00::/8"); a bare address is a range of one.
func envCIDRs(name string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, v := range splitList(os.Getenv(name)) {
		if !strings.Contains(v, "/") {
			if ip := net.ParseIP(v); ip != nil {
				bits := 8 * len(ip.To16())
				if ip.To4() != nil {
					ip, bits = ip.To4(), 32
				}
				out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
				continue
			}
		}
		_, r, err := net.ParseCIDR(v)
		if err != nil {
			return nil, usagef("%s: %q is not an address range such as 10.0.0.0/8", name, v)
		}
		out = append(out, r)
	}
	return out, nil
}

// envRate reads NAME (requests per second per user, 0 for no limit) and
// NAME_BURST.
func envRate(name string, perSecond float64, burst int) (impl.RateLimit, error) {
	if v := os.Getenv(name); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return impl.RateLimit{}, usagef("%s=%q is not a non-negative number of requests per second", name, v)
		}
		perSecond = f
	}
	b, err := envInt(name+"_BURST", burst)
	if err != nil {
		return impl.RateLimit{}, err
	}
	return impl.RateLimit{PerSecond: perSecond, Burst: b}, nil
}

// defaultRetention is how long finished jobs are kept unless JOBS_RETENTION
// says otherwise.
const defaultRetention = 30 * 24 * time.Hour

// envRetention reads JOBS_RETENTION ("720h"; 0 keeps finished jobs for
// ever). The worker deletes older finished jobs; the API's cache never
// serves one.
func envRetention() (time.Duration, error) {
	return envDuration("JOBS_RETENTION", defaultRetention)
}
