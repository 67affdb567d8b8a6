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
type preparedStmts struct {
	m  sync.Map   // query → *sql.Stmt
	mu sync.Mutex // held while one is prepared, so that none is prepared twice
}

// query runs query with args, prepared unless the store is behind a
// pooler.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s.pooler {
		return s.db.QueryContext(ctx, query, args...)
	}
	stmt, err := s.stmts.get(ctx, s.db.DB, query) //nolint:sqlclosecheck // kept for the store's life (get)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

// get returns query's statement, preparing it on first use (database/sql
// prepares it again on each connection that first runs it). The statements
// live as long as db: closing db closes them.
func (p *preparedStmts) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	if st, ok := p.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, query) //nolint:sqlclosecheck // kept for db's life: closing db closes it
	if err != nil {
		return nil, err
	}
	p.m.Store(query, st)
	return st, nil
}
