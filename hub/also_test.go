package hub_test

import (
	"database/sql"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestAlso: a channel added with Also is heard on the hub's own connection
// (one LISTEN connection per API process, whatever else listens), and a
// notification on it calls its wake-up.
func TestAlso(t *testing.T) {
	url := pgtest.NewDatabase(t)
	h, err := hub.New(url, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	woken := make(chan struct{}, 8)
	if err := h.Also("other_channel", func() { woken <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var listening int
	if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&listening); err != nil {
		t.Fatal(err)
	}
	if listening != 1 {
		t.Errorf("%d connections LISTENing, want 1 (the hub's)", listening)
	}
	if _, err := db.Exec(`SELECT pg_notify('other_channel', '')`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up 10 s after NOTIFY other_channel")
	}
}
