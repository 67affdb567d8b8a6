package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

func runList(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("list", stderr, g)
	setUsage(fs, "list [--status S] [--type T] [--limit N] [--cursor C] [--all]", `
Lists your jobs, newest first, as a table: id, type, status, attempts and
creation time. Without --all one page is shown (--limit jobs, 20 by default)
and the cursor of the next page, if any, is printed on stderr.`)
	status := fs.String("status", "", "only jobs with this `status`: PENDING, PROCESSING, COMPLETED or FAILED")
	typ := fs.String("type", "", "only jobs of this `type`, e.g. RISK_ANALYSIS (aliases as for create)")
	limit := fs.Int("limit", 0, "jobs per page, 1 to 100 (server default 20)")
	cursor := fs.String("cursor", "", "start at this `cursor` (a previous page's next cursor)")
	all := fs.Bool("all", false, "list every page")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	opts := client.ListOptions{Limit: *limit, Cursor: *cursor, Status: gen.JobStatus(strings.ToUpper(*status))}
	if opts.Status != "" && !opts.Status.Valid() {
		return usageError(fs, stderr, "unknown status %q", *status)
	}
	if *typ != "" {
		t, ok := jobTypeOf(*typ)
		if !ok {
			return usageError(fs, stderr, "unknown job type %q", *typ)
		}
		opts.Type = t
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPTS\tCREATED")
	row := func(j gen.Job) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", j.Id, j.Type, j.Status, j.Attempts, j.CreatedAt)
	}
	if *all {
		for j, err := range c.All(background(), opts) {
			if err != nil {
				tw.Flush()
				return fail(stderr, err)
			}
			row(j)
		}
		tw.Flush()
		return exitOK
	}
	page, err := c.List(background(), opts)
	if err != nil {
		return fail(stderr, err)
	}
	for _, j := range page.Jobs {
		row(j)
	}
	tw.Flush()
	if page.NextCursor != nil {
		fmt.Fprintf(stderr, "more jobs: --cursor %s (or --all)\n", *page.NextCursor)
	}
	return exitOK
}
