package conformance

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/apitest"
	"github.com/jobsd/jobsd/internal/sandbox"
)

// clientID is the app client whose tokens the in-process server accepts.
const clientID = apitest.ClientID

// env is what every test uses; TestMain fills it once per test binary.
var env struct {
	baseURL  string
	blackBox bool
	// In process only:
	db     *sqlx.DB
	issuer *auth.Issuer
	// Black-box only:
	tokenCmd string
}

func TestMain(m *testing.M) {
	sandbox.Main() // the worker's PDF and DOCX parses re-execute this binary
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if base := os.Getenv("CONFORMANCE_BASE_URL"); base != "" {
		env.baseURL = strings.TrimRight(base, "/")
		env.blackBox = true
		env.tokenCmd = os.Getenv("CONFORMANCE_TOKEN_CMD")
		if env.tokenCmd == "" {
			fmt.Fprintln(os.Stderr, "conformance: CONFORMANCE_BASE_URL needs CONFORMANCE_TOKEN_CMD, a command that prints a valid bearer token")
			return 2
		}
		return m.Run()
	}
	stop, err := startInProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startInProcess starts PostgreSQL and the real API (no worker: jobs stay
// where the tests put them) on a loopback port, with a local issuer whose
// JWKS the API fetches over HTTP.
func startInProcess() (stop func(), err error) {
	opts := apitest.Options{NoWorker: true, CORSOrigins: []string{"https://app.example.com"}}
	if os.Getenv("CONFORMANCE_VERBOSE") != "" {
		opts.Log = slog.Default()
	}
	srv, err := apitest.Start(opts)
	if err != nil {
		return nil, err
	}
	env.baseURL, env.db, env.issuer = srv.URL, srv.Store.DB(), srv.Issuer()
	return srv.Close, nil
}

// requireInProcess skips a check that needs the in-process server (its
// database or its issuer's key). Only black-box mode skips.
func requireInProcess(t *testing.T) {
	t.Helper()
	if env.blackBox {
		t.Skip("black-box mode: this check needs the in-process server")
	}
}

// requireCreate skips checks that create jobs in black-box mode unless allowed.
func requireCreate(t *testing.T) {
	t.Helper()
	if env.blackBox && os.Getenv("CONFORMANCE_ALLOW_CREATE") != "1" {
		t.Skip("black-box mode: set CONFORMANCE_ALLOW_CREATE=1 to run checks that create jobs")
	}
}

// token returns a valid access token for sub (an admin when admin is set).
// In black-box mode the token command decides the user.
func token(t *testing.T, sub string, admin bool) string {
	t.Helper()
	if env.blackBox {
		out, err := exec.Command("sh", "-c", env.tokenCmd).Output()
		if err != nil {
			t.Fatalf("CONFORMANCE_TOKEN_CMD: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	var groups []string
	if admin {
		groups = []string{"admin"}
	}
	tok, err := env.issuer.Mint(sub, clientID, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
