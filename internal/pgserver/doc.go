// Package pgserver provides a throwaway PostgreSQL server.
//
// The test suites start one server per test binary and create a fresh
// database per test with [Server.CreateDatabase]; `jobsd dev` starts one to
// run the service against a temporary database.
//
// [Start] tries, in order: an explicit URL ([SourceURL]), a Docker container
// ([SourceDocker], labelled jobsd.test=true so leftovers can be removed by
// label), and a temporary cluster made with the initdb/postgres binaries found
// on PATH or under /usr/lib/postgresql/*/bin ([SourceBinaries]). When every
// source fails, the error lists why each one failed and how to fix it.
// [Server.Close] stops what was started and removes its files.
//
// The container is started through the docker command line by default
// ([StartDockerCLI]), so `jobsd dev` links no Docker client library; the test
// suites pass pgdocker.Start, which uses testcontainers-go, as
// [Options.Docker].
package pgserver
