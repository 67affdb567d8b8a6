package store

import (
	"context"
	"database/sql"
	"sync"
)

// The worker's statements (claims, outcomes) run thousands of times a
// second with the same text. Sent as text with arguments, each is parsed
// and planned again, and with lib/pq's default settings takes two round
// trips (Parse and Describe, then Bind and Execute). Prepared, it is parsed
// once per connection, planned once PostgreSQL settles on its generic plan,
// and sent in one round trip. Behind a pooler nothing is prepared
// (pooler.go).

// preparedStmts holds the store's prepared statements by their text.
type preparedStmts struct{ m sync.Map } // query → *sql.Stmt

// query runs query with args, prepared unless the store is behind a
// pooler; within tx when tx is not nil.
func (s *Store) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if s.pooler {
		if tx != nil {
			return tx.QueryContext(ctx, query, args...)
		}
		return s.db.QueryContext(ctx, query, args...)
	}
	stmt, err := s.stmts.get(ctx, s.db.DB, query)
	if err != nil {
		return nil, err
	}
	if tx != nil {
		stmt = tx.StmtContext(ctx, stmt) // closed by the transaction's end
	}
	return stmt.QueryContext(ctx, args...)
}

// get returns query's statement, preparing it on first use (database/sql
// prepares it again on each connection that first runs it).
func (p *preparedStmts) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	if st, ok := p.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := p.m.LoadOrStore(query, st); loaded {
		_ = st.Close() // prepared twice at once: keep the first
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}
