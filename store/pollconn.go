package store

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"time"

	"github.com/lib/pq"
)

// The status reads' own connections, bounded at the socket.
//
// A read must not hang on a connection whose server stopped answering, so it
// needs a bound; a context with a deadline gives one, at a price every poll
// paid: with a Done channel, database/sql (Rows.awaitDone) and lib/pq
// (conn.watchCancel) each start a goroutine per query to watch it, which
// more than doubled the CPU of a primary-key read's round trip
// (BenchmarkQueryDeadline). Both skip the goroutine when the context has no
// Done channel (database/sql's Rows.initContextClose, lib/pq's watchCancel),
// so a status read that finds no batch in flight (every read at low
// concurrency) runs with context.Background() on connections of its pool's
// own whose socket carries the bound instead (a batch that queued keeps a
// context with its oldest read's deadline: readPool.getMany): every write to the server (a query
// begins with one) sets the connection's read and write deadline to the
// store's statement timeout from then (or from a moment at most an eighth of
// it earlier: deadlineConn). A read that outlives it fails with a
// timeout (*net.OpError), which makes lib/pq mark the connection bad
// (handleError), so database/sql closes that connection alone and the next
// read opens another. Nothing reads an idle connection, so a deadline that
// passes while the connection waits in the pool breaks nothing.
//
// The pool holds as many connections as the read batcher runs statements at
// once, so a read never waits for a connection (a wait that
// context.Background() would not bound), and reads no longer queue behind the
// rest of the store's work for one.

// openPollDB opens the status reads' pool on dsn: at most slots connections,
// each dialled within timeout and bounded by it per statement.
func openPollDB(dsn string, timeout time.Duration, slots int) (*sql.DB, error) {
	c, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("status reads' pool: %w", err)
	}
	c.Dialer(deadlineDialer{timeout: timeout, d: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}})
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(slots)
	db.SetMaxIdleConns(slots)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// deadlineDialer dials connections whose every statement must finish within
// timeout of being sent (deadlineConn).
type deadlineDialer struct {
	timeout time.Duration
	d       net.Dialer
}

func (d deadlineDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d deadlineDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, timeout: d.timeout}, nil
}

// deadlineConn is a connection to PostgreSQL whose deadline is armed by
// writes: what lib/pq sends is a query (or a step of one, or of the
// start-up), and its answer must arrive within timeout. Moving a deadline
// costs two timer updates in the runtime's poller (read and write), so a
// write within rearmAfter of the last arming keeps it: every statement then
// has between timeout-rearmAfter and timeout from its first write, and
// under load the deadline moves a few times a second, not once a query.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	armed   time.Time // when the deadline was last set: timeout before it ends
}

// rearmAfter is how old an armed deadline may be and still serve a new
// statement: an eighth of the timeout.
func (c *deadlineConn) rearmAfter() time.Duration { return c.timeout / 8 }

func (c *deadlineConn) Write(b []byte) (int, error) {
	if now := time.Now(); now.Sub(c.armed) >= c.rearmAfter() {
		if err := c.Conn.SetDeadline(now.Add(c.timeout)); err != nil {
			return 0, err
		}
		c.armed = now
	}
	return c.Conn.Write(b)
}

// SetDeadline is lib/pq's (its connect_timeout): the next write arms the
// statement's deadline afresh.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.armed = time.Time{}
	return c.Conn.SetDeadline(t)
}
