// Package server is generated from openapi.yaml by oapi-codegen: the echo
// server interface (plain and strict) over the models of package gen, and
// the embedded spec. impl/ fulfils StrictServerInterface.
package server

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config config.yaml ../../openapi.yaml
