package jobtype

import (
	"os"
	"testing"

	"github.com/jobsd/jobsd/internal/sandbox"
)

// TestMain lets this test binary serve as the PDF and DOCX parsers' child
// process (internal/sandbox re-executes it).
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}
