// Package pgserver provides a throwaway PostgreSQL server.
//
// The test suites start one server per test binary and create a fresh
// database per test with [Server.CreateDatabase]; `jobsd dev` starts one to
// run the service against a temporary database.
//
// [Start] tries, in order: an explicit URL ([SourceURL]), a Docker container
// started with testcontainers-go ([SourceDocker], labelled jobsd.test=true so
// leftovers can be removed by label when Ryuk is disabled), and a temporary
// cluster made with the initdb/postgres binaries found on PATH or under
// /usr/lib/postgresql/*/bin ([SourceBinaries]). When every source fails, the
// error lists why each one failed and how to fix it. [Server.Close] stops what
// was started and removes its files.
package pgserver
