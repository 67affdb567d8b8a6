package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/timestamp"
)

// The operator's commands: `jobsctl admin <command>`, with an admin's token.

var adminCommands = []command{
	{"get", "ID", "print any user's job with its owner, worker and requeue links", runAdminGet},
	{"attempts", "ID", "print a job's attempts (start, end, worker, outcome, error)", runAdminAttempts},
	{"list", "[flags]", "list every user's jobs, newest first", runAdminList},
	{"cancel", "ID", "cancel any user's PENDING or PROCESSING job", runAdminCancel},
	{"requeue", "ID", "run a FAILED job again as a new job and print it", runAdminRequeue},
	{"requeue-failed", "--since D [flags]", "requeue FAILED jobs by filter (--dry-run counts them)", runAdminRequeueFailed},
	{"stats", "", "print the queue at a glance as JSON", runAdminStats},
	{"workers", "", "list the live workers", runAdminWorkers},
	{"webhooks", "[flags]", "list every user's webhook endpoints and their health", runAdminWebhooks},
}

func runAdmin(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin", stderr, g)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  jobsctl admin <command> [flags] [args]\n\nThe operator's API; the token must be an admin's.\n\nCommands:\n")
		for _, c := range adminCommands {
			fmt.Fprintf(fs.Output(), "  %-15s %-18s %s\n", c.name, c.args, c.summary)
		}
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	for _, c := range adminCommands {
		if c.name == fs.Arg(0) {
			return c.run(g, fs.Args()[1:], stdout, stderr)
		}
	}
	return usageError(fs, stderr, "unknown admin command %q", fs.Arg(0))
}

func runAdminGet(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "admin get", "Prints any user's job, with its owner, worker and requeue links, as JSON.", (*client.Client).AdminGet)
}

func runAdminAttempts(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "admin attempts", "Prints the job's attempts, oldest first, as JSON.", (*client.Client).AdminAttempts)
}

func runAdminCancel(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "admin cancel", `
Cancels any user's PENDING or PROCESSING job: it ends FAILED with the error
"Cancelled by an administrator". A finished job is an error (409, exit 3).`, (*client.Client).AdminCancel)
}

func runAdminRequeue(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnJob(g, args, stdout, stderr, "admin requeue", `
Runs a FAILED job again as a new job (same user, type and input) and prints
the new job. The original stays FAILED. A job is requeued at most once, and
a cancelled job never (409, exit 3).`, (*client.Client).AdminRequeue)
}

func runAdminList(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin list", stderr, g)
	setUsage(fs, "admin list [--user U] [--status S] [--type T] [--since D] [--limit N] [--cursor C]", `
Lists every user's jobs, newest first, as a table: id, user, type, status,
attempts and creation time. The cursor of the next page, if any, is printed
on stderr.`)
	user := fs.String("user", "", "only this `user`'s jobs (a token's sub)")
	status := fs.String("status", "", "only jobs with this `status`")
	typ := fs.String("type", "", "only jobs of this `type` (aliases as for create)")
	since := fs.Duration("since", 0, "only jobs created within this `duration`, e.g. 1h")
	limit := fs.Int("limit", 0, "jobs per page, 1 to 100 (server default 20)")
	cursor := fs.String("cursor", "", "start at this `cursor`")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	var p gen.AdminListJobsParams
	if *user != "" {
		p.UserId = user
	}
	if *status != "" {
		st := gen.JobStatus(strings.ToUpper(*status))
		if !st.Valid() {
			return usageError(fs, stderr, "unknown status %q", *status)
		}
		p.Status = &st
	}
	if *typ != "" {
		t, ok := jobTypeOf(*typ)
		if !ok {
			return usageError(fs, stderr, "unknown job type %q", *typ)
		}
		p.Type = &t
	}
	if *since > 0 {
		after := timestamp.New(time.Now().Add(-*since)).String()
		p.CreatedAfter = &after
	}
	if *limit != 0 {
		p.Limit = limit
	}
	if *cursor != "" {
		p.Cursor = cursor
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	page, err := c.AdminList(background(), p)
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTYPE\tSTATUS\tATTEMPTS\tCREATED")
	for _, j := range page.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", j.Job.Id, j.UserId, j.Job.Type, j.Job.Status, j.Job.Attempts, j.Job.CreatedAt)
	}
	tw.Flush()
	if page.NextCursor != nil {
		fmt.Fprintf(stderr, "more jobs: --cursor %s\n", *page.NextCursor)
	}
	return exitOK
}

func runAdminRequeueFailed(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin requeue-failed", stderr, g)
	setUsage(fs, "admin requeue-failed --since D [--error-contains S] [--type T] [--user U] [--limit N] [--dry-run]", `
Requeues FAILED jobs that failed within --since and match the filters,
oldest first, up to --limit (100; at most 1000), and prints what matched and
the new jobs as JSON. Cancelled and already requeued jobs never match.`)
	since := fs.Duration("since", 0, "jobs that failed within this `duration`, e.g. 1h (required)")
	contains := fs.String("error-contains", "", "only jobs whose error contains this `text`, e.g. ThrottlingException")
	typ := fs.String("type", "", "only jobs of this `type`")
	user := fs.String("user", "", "only this `user`'s jobs")
	limit := fs.Int("limit", 0, "most jobs to requeue (server default 100)")
	dry := fs.Bool("dry-run", false, "count what matches; create nothing")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	if *since <= 0 {
		return usageError(fs, stderr, "--since is required (e.g. --since 1h)")
	}
	req := gen.RequeueRequest{FailedAfter: timestamp.New(time.Now().Add(-*since)), DryRun: dry}
	if *contains != "" {
		req.ErrorContains = contains
	}
	if *typ != "" {
		t, ok := jobTypeOf(*typ)
		if !ok {
			return usageError(fs, stderr, "unknown job type %q", *typ)
		}
		req.Type = &t
	}
	if *user != "" {
		req.UserId = user
	}
	if *limit != 0 {
		req.Limit = limit
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	res, err := c.AdminRequeueFailed(background(), req)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, res); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

func runAdminStats(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin stats", stderr, g)
	setUsage(fs, "admin stats", "Prints the queue at a glance (counts, the last hour, workers) as JSON.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	st, err := c.AdminStats(background())
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, st); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

func runAdminWorkers(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin workers", stderr, g)
	setUsage(fs, "admin workers", "Lists the live workers as a table.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	ws, err := c.AdminWorkers(background())
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tPID\tVERSION\tSTARTED\tLAST SEEN\tIN FLIGHT")
	for _, w := range ws.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d/%d\n", w.Id, w.Host, w.Pid, w.Version, w.StartedAt, w.LastSeenAt, w.InFlight, w.Concurrency)
	}
	tw.Flush()
	return exitOK
}
