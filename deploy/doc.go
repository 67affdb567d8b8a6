// Package deploy holds what runs jobsd outside a developer's machine: the
// Prometheus alert rules (prometheus/), the Grafana dashboard (grafana/) and
// the test of the runtime image (image_test.go), which starts the image
// built from the repository's Dockerfile against PostgreSQL and runs the
// black-box conformance suite against it. It has no Go API.
package deploy
