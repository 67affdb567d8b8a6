// Package gen is generated from openapi.yaml by oapi-codegen: the models
// (types of the schemas, parameters and bodies). The echo server interface
// and the embedded spec are in gen/server, the typed client in
// gen/apiclient, so that a client or a worker links no server. Regenerate
// with `make generate`; never edit the *.gen.go files by hand.
package gen

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config config.yaml ../openapi.yaml
