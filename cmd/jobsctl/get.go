package main

import (
	"io"
)

func runGet(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("get", stderr, g)
	setUsage(fs, "get [flags] ID", "Prints the job with the given ID as JSON.")
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
	job, err := c.Get(background(), id)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, job); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}
