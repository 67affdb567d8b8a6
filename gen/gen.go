// Package gen is generated from openapi.yaml by oapi-codegen: the models, the
// echo server interface (plain and strict), the typed client and the embedded
// spec. Regenerate with `make generate`; never edit jobs.gen.go by hand.
package gen

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config config.yaml ../openapi.yaml
