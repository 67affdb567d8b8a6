// Package faults holds jobsd's fault-injection and soak tests. They run the
// jobsd binary of the test run (internal/proctest: JOBSD_BIN, or one built
// once for all packages), `jobsd serve` and `jobsd worker` as real processes
// on 127.0.0.1, ready when their /readyz says so, against a throwaway
// PostgreSQL database (internal/pgtest), and break things around them: the
// database link (a TCP proxy the test can cut), backends terminated
// server-side, workers SIGKILLed, the API SIGTERMed, the JWKS endpoint
// closed, slow model calls, row locks and a tiny connection pool. After each
// fault an audit reads the jobs table (and a history table filled by a
// trigger the tests install) and checks that no job was lost, none finished
// twice, and none was finished by a worker that had lost its lease.
//
//	go test ./faults/                                  # all of it, about a minute
//	go test -short ./faults/                           # skips every test
//	JOBS_SOAK=5m go test -run TestSoak -v ./faults/     # a long soak (make soak)
//
// RELIABILITY.md at the repository root records what these tests observed.
package faults
