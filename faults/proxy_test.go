package faults

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// A proxy that can go away and come back on the same address: the database
// proxy of the fault tests.
//
// It keeps its listener through a cut and closes what it accepts meanwhile
// (the client sees its connection closed at once, as a database that went
// away): closing the listener and listening again on the same port failed
// now and then with "address already in use", since any outgoing connection
// of the machine may take that port as its own while it is free.

// proxy forwards 127.0.0.1:port to target, except while cut.
type proxy struct {
	t      testing.TB
	addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	cuts  int
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr, p.ln = ln.Addr().String(), ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	t.Cleanup(func() {
		p.cut()
		ln.Close()
	})
	return p
}

func (p *proxy) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

func (p *proxy) forward(c net.Conn) {
	if p.isDown() {
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut while dialling
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes every forwarded connection; new connections are closed as soon
// as they are accepted, until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return
	}
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
}

// restore forwards new connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// viaProxy rewrites a postgres URL to go through the proxy.
func (p *proxy) url(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

func hostPort(t testing.TB, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("database URL %q: not a postgres:// URL with a host (%v)", dbURL, err)
	}
	return u.Host
}
