package notify_test

import (
	"database/sql"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/notify"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestListen: a listener hands over the notifications of its channels, in
// order, and none of the others.
func TestListen(t *testing.T) {
	url := pgtest.NewDatabase(t)
	type note struct{ Channel, Payload string }
	got := make(chan note, 8)
	l := notify.Listen(url, []string{notify.JobsChanged, notify.JobsCancelled}, slog.New(slog.DiscardHandler),
		func(channel, payload string) { got <- note{channel, payload} }, func() {})
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	if !l.WaitUp(10 * time.Second) {
		t.Fatal("not connected after 10 s")
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`SELECT pg_notify('` + notify.JobsCancelled + `', 'a')`,
		`SELECT pg_notify('` + notify.JobsInserted + `', '')`, // not listened to
		`SELECT pg_notify('` + notify.JobsChanged + `', 'b,c')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	want := []note{{notify.JobsCancelled, "a"}, {notify.JobsChanged, "b,c"}}
	var notes []note
	for range want {
		select {
		case n := <-got:
			notes = append(notes, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, then nothing for 10 s", notes)
		}
	}
	if diff := cmp.Diff(want, notes); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	select {
	case n := <-got:
		t.Errorf("unexpected notification %v", n)
	case <-time.After(200 * time.Millisecond): // a notification on a channel not listened to would arrive as fast as the others
	}
}
