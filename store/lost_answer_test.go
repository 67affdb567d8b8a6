package store_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestCreateAnswerLost: the insert of a new job commits, but its answer is
// lost and the connection ends with a FATAL error, as PgBouncer reports a
// server connection that broke mid-statement. lib/pq turns a FATAL error
// into driver.ErrBadConn, on which database/sql runs the statement again
// on another connection; the job's id is already taken, by this very
// Create. Create returns the job it made, once, rather than the unique
// violation (which the API answered 500 in the fault suite behind
// PgBouncer).
func TestCreateAnswerLost(t *testing.T) {
	for _, pooled := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "behind a transaction pooler"}[pooled]
		t.Run(name, func(t *testing.T) {
			url := pgtest.NewDatabase(t)
			proxyURL, lost := newAnswerLosingProxy(t, url, []byte("INSERT INTO jobs"))
			st, err := store.Open(t.Context(), proxyURL, store.Options{Pooler: pooled})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			j, replayed, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeRiskAnalysis, Input: []byte(`{"text":"x"}`)})
			if err != nil || replayed || j.UserID != "alice" || j.Status != job.StatusPending {
				t.Fatalf("create: %+v, replayed %v, %v", j, replayed, err)
			}
			if lost.Load() != 1 {
				t.Fatalf("the proxy lost %d answers, want 1: the test did not test", lost.Load())
			}
			var n int
			if err := st.DB().GetContext(t.Context(), &n, `SELECT count(*) FROM jobs`); err != nil || n != 1 {
				t.Errorf("%d jobs (%v), want the one", n, err)
			}
		})
	}
}

// newAnswerLosingProxy forwards connections to the database of dbURL and,
// the first time a client sends a message containing match, lets the
// server run it to its end (ReadyForQuery: committed, outside a
// transaction) but drops its answer, sends the client a FATAL error and
// closes the connection. It returns the URL through it and the count of
// answers it dropped.
func newAnswerLosingProxy(t *testing.T, dbURL string, match []byte) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	var armedOnce sync.Once
	var conns sync.WaitGroup
	upstream := u.Host
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			var armed atomic.Bool
			conns.Add(2)
			go func() { // client to server: arm on the first match
				defer conns.Done()
				defer s.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 && bytes.Contains(buf[:n], match) {
						armedOnce.Do(func() { armed.Store(true) })
					}
					if n > 0 {
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server to client, message by message
				defer conns.Done()
				defer c.Close()
				loseAnswer(bufio.NewReader(s), c, &armed, &lost)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	u.Host = ln.Addr().String()
	return u.String(), &lost
}

// loseAnswer copies the server's messages to the client. Once armed, it
// holds them back up to ReadyForQuery: an answer that completed a command
// (CommandComplete) is dropped, and the client's connection ended with a
// FATAL ErrorResponse; any other (lib/pq's Parse and Describe round, on
// the direct path) goes on to the client.
func loseAnswer(from *bufio.Reader, to net.Conn, armed *atomic.Bool, lost *atomic.Int64) {
	var held []byte
	completed := false
	for {
		head := make([]byte, 5)
		if _, err := io.ReadFull(from, head); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(from, body); err != nil {
			return
		}
		msg := append(head, body...)
		if !armed.Load() {
			if _, err := to.Write(msg); err != nil {
				return
			}
			continue
		}
		held = append(held, msg...)
		completed = completed || head[0] == 'C'
		if head[0] != 'Z' {
			continue
		}
		if !completed {
			if _, err := to.Write(held); err != nil {
				return
			}
			held = held[:0]
			continue
		}
		lost.Add(1)
		var e bytes.Buffer
		for _, f := range []string{"SFATAL", "VFATAL", "C08P01", "Mserver conn crashed?"} {
			e.WriteString(f)
			e.WriteByte(0)
		}
		e.WriteByte(0)
		fatal := binary.BigEndian.AppendUint32([]byte{'E'}, uint32(e.Len()+4))
		_, _ = to.Write(append(fatal, e.Bytes()...))
		return
	}
}
