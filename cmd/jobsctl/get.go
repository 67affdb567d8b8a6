package main

import (
	"context"
	"io"

	"github.com/jobsd/jobsd/client"
)

func runGet(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "get", "Prints the job with the given ID as JSON.", (*client.Client).Get)
}

func runCancel(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "cancel", `
Cancels a PENDING or PROCESSING job: it ends FAILED with the error
"Cancelled by user", and the cancelled job is printed as JSON. Cancelling a
finished job is an error (409, exit status 3).`, (*client.Client).Cancel)
}

// runOnJob is a command that takes one job ID, calls the API with it and
// prints what it answers (a job, an admin's view of one, its attempts) as
// JSON.
func runOnJob[T any](g *globals, args []string, stdout, stderr io.Writer, name, help string,
	call func(*client.Client, context.Context, string) (*T, error)) int {
	fs := newFlagSet(name, stderr, g)
	setUsage(fs, name+" [flags] ID", help)
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	id, code, ok := oneID(fs, stderr, pos)
	if !ok {
		return code
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	v, err := call(c, background(), id)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, v); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}
