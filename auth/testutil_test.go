package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testClient = "client-1"
	// testInterval is the verifiers' refetch interval. Tests pass it by
	// advancing a fake clock (fakeKeyClock), never by sleeping.
	testInterval = time.Minute
)

var (
	keysOnce sync.Once
	testKeys []*rsa.PrivateKey
)

// testKey returns the n-th (0..2) shared test key; generating RSA keys is slow.
func testKey(t testing.TB, n int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[n]
}

// jwksServer serves the current issuer's JWKS and counts requests.
type jwksServer struct {
	srv    *httptest.Server
	hits   atomic.Int64
	issuer atomic.Pointer[Issuer]
	slow   atomic.Bool   // when set, requests block until released
	fail   atomic.Bool   // when set, requests get 500
	stop   chan struct{} // releases slow requests
}

func newJWKSServer(t testing.TB, key *rsa.PrivateKey) *jwksServer {
	t.Helper()
	s := &jwksServer{stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path != JWKSPath {
			http.NotFound(w, r)
			return
		}
		if s.slow.Load() {
			select {
			case <-r.Context().Done():
			case <-s.stop:
			}
			return
		}
		if s.fail.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		s.issuer.Load().JWKSHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.stop) }) // runs before srv.Close
	s.issuer.Store(NewIssuer(key, s.srv.URL))
	return s
}

func (s *jwksServer) iss() *Issuer { return s.issuer.Load() }

func newTestVerifier(t testing.TB, s *jwksServer, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		Issuer:             s.srv.URL,
		ClientIDs:          []string{"other-client", testClient},
		MinRefreshInterval: testInterval,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// accessClaims returns valid access-token claims; mod may change them.
func accessClaims(iss string, mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":       iss,
		"sub":       "user-1",
		"client_id": testClient,
		"token_use": "access",
		"username":  "alice",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"jti":       "j1",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

// idClaims returns valid ID-token claims; mod may change them.
func idClaims(iss string, mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":              iss,
		"sub":              "user-2",
		"aud":              testClient,
		"token_use":        "id",
		"cognito:username": "bob",
		"cognito:groups":   []string{"admin"},
		"iat":              now.Unix(),
		"exp":              now.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

// must panics on err; it only wraps token-signing calls in tests.
func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// fakeClock is a clock that moves only when told; safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeKeyClock gives v's key cache a fake clock, starting at the real time,
// and returns it: the refetch rate limit then depends on Advance alone.
func fakeKeyClock(v *Verifier) *fakeClock {
	c := &fakeClock{now: time.Now()}
	v.keys.now = c.Now
	return c
}
