package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
)

// Behind a pooler in transaction mode (PgBouncer's pool_mode=transaction,
// RDS Proxy), each transaction of a client connection may run on another
// server connection, so no statement may rely on what an earlier one left
// in the session. With Options.Pooler the store keeps to that:
//
//   - It prepares nothing. A named prepared statement lives on one server
//     connection: through PgBouncer 1.18 its executions fail with
//     "prepared statement "1" does not exist" (or "already exists" when
//     prepared again) on the others, and RDS Proxy pins the client
//     connection to one server connection for its life.
//   - It sends each statement with arguments in one round trip, with
//     lib/pq's binary_parameters=yes: Parse, Bind, Execute and one Sync.
//     Without it lib/pq parses the unnamed statement and binds it after a
//     second Sync, and the pooler may hand that Bind to another server
//     connection: through PgBouncer half of such statements failed under
//     concurrency ("bind message supplies 1 parameters, but prepared
//     statement "" requires 2"), and a Bind that lands on another client's
//     statement with as many parameters runs that statement instead.
//     binary_parameters sends []byte arguments in binary format, which is
//     right for bytea (the request hash) and wrong for jsonb, so every JSON
//     argument the store passes is a string.
//   - Transactions are fine: a pooler keeps a transaction on one server
//     connection, so the transaction-scoped advisory locks
//     (pg_advisory_xact_lock) work. What needs a session (LISTEN, the
//     migration's session-level advisory lock) does not use the store's
//     pool: it takes a direct connection of its own (JOBS_DIRECT_DATABASE_URL).
//
// The direct path (no pooler) keeps its prepared statements, the polls'
// (reads.go) and the worker's claims and outcomes (prepared.go): a
// prepared statement skips the parse and plan of every execution.

// pooledURL is url with binary_parameters=yes: one round trip per
// statement, whatever pooler is in between.
func pooledURL(raw string) (string, error) { return withParam(raw, "binary_parameters", "yes") }

// withParam is the connection string raw with the parameter key set to
// value (replacing any value raw gives it). It takes a postgres:// URL or a
// key=value connection string, as lib/pq does; lib/pq sends a parameter it
// does not know itself to the server, as a setting of the session.
func withParam(raw, key, value string) (string, error) {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("database URL: %w", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return raw + " " + key + "=" + value, nil // the last of a repeated key wins
}

// query runs one of the statements that are prepared on a direct
// connection: through stmt, or, behind a pooler (stmt nil), as query with
// its arguments in one round trip.
func (p *readPool) query(ctx context.Context, stmt *sql.Stmt, query string, args ...any) (*sql.Rows, error) {
	if stmt == nil {
		return p.polls.QueryContext(ctx, query, args...)
	}
	return stmt.QueryContext(ctx, args...)
}
