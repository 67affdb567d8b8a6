// Package conformance is the contract test suite of jobsd: it proves that a
// server answers as openapi.yaml and the documentation it encodes
// (testdata/get-job-status.txt) say, down to the bytes of the documented
// examples and errors. Every response it receives is validated against
// openapi.yaml with kin-openapi.
//
// By default (`make conformance`) it starts PostgreSQL (a container through
// testcontainers-go, else the PostgreSQL binaries on PATH, or
// JOBS_TEST_DATABASE_URL, see internal/pgtest), migrates it, and runs the real server in process
// with a local token issuer. With CONFORMANCE_BASE_URL it runs black-box
// against any deployment: CONFORMANCE_TOKEN_CMD prints a valid token (run
// with `sh -c`), and only read-only and error checks run unless
// CONFORMANCE_ALLOW_CREATE=1 allows checks that create jobs (which may cost
// real model calls; use a dedicated test user).
package conformance
