package store_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestStuckReadIsBounded: a status read whose server stops answering
// mid-statement fails within the store's statement timeout, although the
// read runs without a context deadline (the caller's context here has none
// either): its connection's socket deadline ends it (pollconn.go). That
// connection alone is dropped; once the server answers again the next read
// succeeds on a new one.
func TestStuckReadIsBounded(t *testing.T) {
	const timeout = 400 * time.Millisecond
	direct := pgtest.NewDatabase(t)
	px := newStallProxy(t, direct)
	st, err := store.Open(t.Context(), px.url, store.Options{QueryTimeout: timeout, ReadBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Before st.Close (cleanups run last first), which waits for the
	// statements in flight: a read that hangs gets its answer then.
	t.Cleanup(func() { px.stall(false) })
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID); err != nil {
		t.Fatalf("a read before the stall: %v", err)
	}
	conns := px.accepted.Load()

	px.stall(true)
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID)
		errc <- err
	}()
	select {
	case err := <-errc:
		took := time.Since(t0)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("stuck read: %v, want ErrUnavailable", err)
		}
		if took < timeout*3/4 || took > 4*timeout {
			t.Errorf("stuck read ended after %v, want about the timeout (%v)", took, timeout)
		}
	case <-time.After(20 * timeout):
		t.Fatalf("a read on a server that stopped answering still hangs after %v", 20*timeout)
	}

	px.stall(false)
	if _, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID); err != nil {
		t.Fatalf("a read after the server answers again: %v", err)
	}
	if n := px.accepted.Load(); n <= conns {
		t.Errorf("no new connection after the stuck one (%d accepted before, %d after): the broken one was reused", conns, n)
	}
}

// TestIdleReadConnectionOutlivesItsDeadline: a status read's connection
// whose deadline passed while it sat idle in the pool serves the next read
// (the next statement arms the deadline afresh): no read fails, and no new
// connection is opened for it.
func TestIdleReadConnectionOutlivesItsDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	px := newStallProxy(t, pgtest.NewDatabase(t))
	st, err := store.Open(t.Context(), px.url, store.Options{QueryTimeout: timeout, ReadBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID); err != nil {
		t.Fatal(err)
	}
	conns := px.accepted.Load()
	time.Sleep(3 * timeout) // what is tested is time passing: nothing to wait for
	for i := range 3 {
		if _, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID); err != nil {
			t.Fatalf("read %d after the idle connection's deadline passed: %v", i, err)
		}
	}
	if n := px.accepted.Load(); n != conns {
		t.Errorf("%d connections opened after the idle time, want none", n-conns)
	}
}

// stallProxy forwards a TCP address to a PostgreSQL server and, while
// stalled, stops passing the server's bytes on (holding them, the
// connections open), as a server or network that stopped answering.
type stallProxy struct {
	url      string // the database's URL through the proxy
	accepted atomic.Int64

	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed when the stall ends
}

func newStallProxy(t *testing.T, dbURL string) *stallProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Skipf("the test database's URL names no TCP address: %v", err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &stallProxy{url: u.String()}
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		ln.Close()
		p.stall(false)
		open.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			open.Store(c, true)
			open.Store(up, true)
			wg.Go(func() { io.Copy(up, c); up.Close() })
			wg.Go(func() { p.copyUnlessStalled(c, up); c.Close() })
		}
	})
	return p
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && !p.stalled:
		p.stalled, p.resume = true, make(chan struct{})
	case !on && p.stalled:
		p.stalled = false
		close(p.resume)
	}
}

// copyUnlessStalled copies the server's bytes to the client, holding each
// chunk read while stalled until the stall ends.
func (p *stallProxy) copyUnlessStalled(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			stalled, resume := p.stalled, p.resume
			p.mu.Unlock()
			if stalled {
				<-resume
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
