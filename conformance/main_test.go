package conformance

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// clientID is the app client whose tokens the in-process server accepts.
const clientID = "conformance-client"

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

// startInProcess starts PostgreSQL, migrates it, and serves the real API on
// a loopback port with a local issuer whose JWKS it fetches over HTTP.
func startInProcess() (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()

	stopPG, err := pgtest.Start()
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, stopPG)
	url, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { st.Close() })
	env.db = st.DB()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	jwks := httptest.NewUnstartedServer(nil)
	env.issuer = auth.NewIssuer(key, "http://"+jwks.Listener.Addr().String())
	jwks.Config.Handler = env.issuer.JWKSHandler()
	jwks.Start()
	cleanups = append(cleanups, jwks.Close)

	v, err := auth.NewVerifier(auth.Config{Issuer: env.issuer.URL(), ClientIDs: []string{clientID, "second-client"}})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CONFORMANCE_VERBOSE") != "" {
		quiet = slog.Default()
	}
	h, err := hub.New(url, quiet)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { h.Close() })
	e, err := impl.New(impl.Config{Store: st, Verifier: v, Log: quiet, Hub: h, CORSOrigins: []string{"https://app.example.com"}})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	cleanups = append(cleanups, func() { srv.Close() })
	env.baseURL = "http://" + ln.Addr().String()
	return stop, nil
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
