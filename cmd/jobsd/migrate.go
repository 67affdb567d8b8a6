package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"

	"github.com/jobsd/jobsd/store"
)

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var dbf dbFlags
	dbf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one of up, down, status")
	}
	if err := dbf.check(); err != nil {
		return err
	}
	// The migrations hold a session-level advisory lock while they run:
	// a direct connection, never a transaction pooler.
	db, err := sql.Open("postgres", dbf.direct)
	if err != nil {
		return err
	}
	defer db.Close()
	switch fs.Arg(0) {
	case "up":
		return store.MigrateUp(ctx, db)
	case "down":
		return store.MigrateDown(ctx, db)
	case "status":
		lines, err := store.MigrationStatus(ctx, db)
		for _, l := range lines {
			fmt.Println(l)
		}
		return err
	}
	return usagef("unknown migrate command %q: want up, down or status", fs.Arg(0))
}
