package impl_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
)

// TestReadiness: /readyz says 200 only while the process takes requests; it
// names why not otherwise, so that a load balancer stops sending there.
func TestReadiness(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := setupPoll(t)
	up, err := hub.New(b.url, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	draining := make(chan struct{})
	close(draining)

	tests := []struct {
		name     string
		hub      *hub.Hub
		draining chan struct{}
		status   int
		body     string
	}{
		{"ready", up, nil, 200, `{"status":"ok"}`},
		{"draining", up, draining, 503, `{"error":"Shutting down"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: quiet, Hub: tc.hub, Draining: tc.draining})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != tc.status || got != tc.body {
				t.Errorf("GET /readyz = %d %s, want %d %s", rec.Code, got, tc.status, tc.body)
			}
		})
	}
}

// TestReadinessListenerDown: while the change listener's connection is cut
// (a proxy in front of the database drops it and refuses new ones), /readyz
// says "Change listener unavailable"; once the database is reachable again
// the listener reconnects and /readyz is 200 again.
func TestReadinessListenerDown(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := setupPoll(t)
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.addr
	h, err := hub.New(u.String(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: quiet, Hub: h})
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() string {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return strconv.Itoa(rec.Code) + " " + strings.TrimSpace(rec.Body.String())
	}
	waitFor := func(want string) {
		t.Helper()
		eventually.NoError(t, 15*time.Second, "GET /readyz = "+want, func() error {
			if got := readyz(); got != want {
				return fmt.Errorf("GET /readyz = %s", got)
			}
			return nil
		})
	}
	waitFor(`200 {"status":"ok"}`)
	p.cut()
	waitFor(`503 {"error":"Change listener unavailable"}`)
	p.restore()
	waitFor(`200 {"status":"ok"}`)
}

// proxy forwards TCP connections to a backend until cut: then it closes
// every connection and refuses new ones, until restored.
type proxy struct {
	t       *testing.T
	addr    string
	backend string
	mu      sync.Mutex
	ln      net.Listener
	conns   []net.Conn
}

func startProxy(t *testing.T, backend string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), backend: backend}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { io.Copy(d, c); d.Close() }()
			go func() { io.Copy(c, d); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
