package main

import (
	"io"
)

func runCancel(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cancel", stderr, g)
	setUsage(fs, "cancel [flags] ID", `
Cancels a PENDING or PROCESSING job: it ends FAILED with the error
"Cancelled by user", and the cancelled job is printed as JSON. Cancelling a
finished job is an error (409, exit status 3).`)
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
	job, err := c.Cancel(background(), id)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, job); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}
