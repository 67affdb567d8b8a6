//go:build tools

// This file pins the code generator's version in go.mod, so that
// `go generate ./gen` runs the same oapi-codegen everywhere.
package tools

import _ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
