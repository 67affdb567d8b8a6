// Package migrations holds the database schema as goose SQL files, embedded in
// the binary so that `jobsd migrate up` needs nothing beside it.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
