package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestLeanClient: the bench's own HTTP/1.1 client reads Content-Length,
// chunked and empty bodies and Connection: close, keeping the connection in
// step: every answer is matched to its own request.
func TestLeanClient(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/small":
			w.Write([]byte(`{"id":"x"}`))
		case "/chunked":
			for range 100 { // flushed pieces: a chunked body
				w.Write([]byte(strings.Repeat("y", 1000)))
				w.(http.Flusher).Flush()
			}
		case "/not-modified":
			if r.Header.Get("If-None-Match") != `"v1"` {
				w.WriteHeader(http.StatusPreconditionFailed)
				return
			}
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p := newLeanClient(srv.URL, 1).newPoller()
	defer p.close()
	for _, tt := range []struct {
		path, token, inm string
		status           int
	}{
		{"/small", "tok", "", 200}, {"/chunked", "tok", "", 200}, {"/not-modified", "tok", `"v1"`, 304}, {"/small", "bad", "", 401},
		{"/missing", "tok", "", 404}, {"/close", "tok", "", 200}, {"/small", "tok", "", 200}, {"/chunked", "tok", "", 200},
	} {
		status, err := p.get(tt.path, tt.token, tt.inm)
		if err != nil || status != tt.status {
			t.Errorf("GET %s: %d, %v; want %d", tt.path, status, err, tt.status)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (a new one only after Connection: close)", n)
	}
}
