package jobtype

import (
	"os"
	"sync"
	"testing"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/sandbox"
)

// TestMain lets this test binary serve as the PDF and DOCX parsers' child
// process (internal/sandbox re-executes it), and stops PostgreSQL if a test
// started it.
func TestMain(m *testing.M) {
	sandbox.Main()
	code := m.Run()
	if pg.stop != nil {
		pg.stop()
	}
	os.Exit(code)
}

// pg is PostgreSQL for the tests that run a real worker, started by the
// first of them: the handler tests need no database.
var pg struct {
	once sync.Once
	stop func()
	err  error
}

func startPostgres(t *testing.T) {
	t.Helper()
	pg.once.Do(func() { pg.stop, pg.err = pgtest.Start() })
	if pg.err != nil {
		t.Fatalf("pgtest: %v", pg.err)
	}
}
