package faults

import (
	"crypto/rsa"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/eventually"
)

// issuer is a token issuer and its JWKS endpoint, which can go away
// (connections refused), come back on the same address, answer slowly and
// publish another key.
type issuer struct {
	t     testing.TB
	url   string // the issuer URL, also where the JWKS is served
	addr  string
	iss   atomic.Pointer[auth.Issuer] // the key the endpoint publishes
	delay atomic.Int64                // nanoseconds each JWKS answer waits
	hits  atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	i := &issuer{t: t, addr: ln.Addr().String()}
	i.url = "http://" + i.addr
	i.iss.Store(auth.NewIssuer(keyA, i.url))
	i.start(ln)
	t.Cleanup(i.stop)
	return i
}

func (i *issuer) start(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc(auth.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		i.hits.Add(1)
		if d := time.Duration(i.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		i.iss.Load().JWKSHandler().ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux}
	i.mu.Lock()
	i.srv = srv
	i.mu.Unlock()
	go srv.Serve(ln)
}

// stop closes the JWKS endpoint: connections refused.
func (i *issuer) stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.srv != nil {
		i.srv.Close()
		i.srv = nil
	}
}

// resume serves the JWKS again on the same address.
func (i *issuer) resume() {
	i.t.Helper()
	var ln net.Listener
	// The closed server's port may take a moment to be free again.
	err := eventually.Wait(time.Second, func() (err error) {
		ln, err = net.Listen("tcp", i.addr)
		return err
	})
	if err != nil {
		i.t.Fatalf("jwks resume: %v", err)
	}
	i.start(ln)
}

// token mints an access token signed with key (keyA or keyB) for sub.
func (i *issuer) token(key *rsa.PrivateKey, sub string, admin bool) string {
	i.t.Helper()
	var groups []string
	if admin {
		groups = []string{"admin"}
	}
	tok, err := auth.NewIssuer(key, i.url).Mint(sub, clientID, groups, time.Hour)
	if err != nil {
		i.t.Fatal(err)
	}
	return tok
}
