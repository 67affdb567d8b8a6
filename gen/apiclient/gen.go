// Package apiclient is generated from openapi.yaml by oapi-codegen: the
// typed HTTP client over the models of package gen. The client package
// wraps it; it links neither echo nor kin-openapi.
package apiclient

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config config.yaml ../../openapi.yaml
