package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

// The webhook commands: `jobsctl webhook <command>` (docs/webhooks.md).

var webhookCommands = []command{
	{"create", "URL [--events E]", "register an endpoint for your jobs; prints it with its secret (shown once)", runWebhookCreate},
	{"list", "", "list your endpoints and their health", runWebhookList},
	{"get", "ID", "print an endpoint as JSON", runWebhookGet},
	{"update", "ID [flags]", "change an endpoint's URL, events, or enable/disable it", runWebhookUpdate},
	{"delete", "ID", "delete an endpoint and its deliveries", runWebhookDelete},
	{"rotate", "ID", "new signing secret (the old one signs too for 24 h); prints it once", runWebhookRotate},
	{"test", "ID", "queue a webhook.test event", runWebhookTest},
	{"deliveries", "ID [flags]", "list an endpoint's deliveries, newest first", runWebhookDeliveries},
	{"replay", "ID DELIVERY_ID", "send a delivery again (same webhook-id)", runWebhookReplay},
}

func runWebhook(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook", stderr, g)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  jobsctl webhook <command> [flags] [args]\n\nSigned HTTP callbacks when your jobs end (Standard Webhooks).\n\nCommands:\n")
		for _, c := range webhookCommands {
			fmt.Fprintf(fs.Output(), "  %-11s %-18s %s\n", c.name, c.args, c.summary)
		}
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	for _, c := range webhookCommands {
		if c.name == fs.Arg(0) {
			return c.run(g, fs.Args()[1:], stdout, stderr)
		}
	}
	return usageError(fs, stderr, "unknown webhook command %q", fs.Arg(0))
}

// uuidArgs checks that exactly n ids were given.
func uuidArgs(fs *flag.FlagSet, stderr io.Writer, pos []string, n int) ([]string, int, bool) {
	if len(pos) != n {
		return nil, usageError(fs, stderr, "want %d ID argument(s), got %d", n, len(pos)), false
	}
	for _, p := range pos {
		if _, err := uuid.Parse(p); err != nil || len(p) != 36 {
			return nil, usageError(fs, stderr, "%q is not an ID (a UUID)", p), false
		}
	}
	return pos, 0, true
}

// eventsFlag splits --events.
func eventsFlag(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func runWebhookCreate(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook create", stderr, g)
	setUsage(fs, "webhook create [--events job.completed,job.failed] URL", `
Registers URL (https, a public address) for your jobs and prints the endpoint
as JSON, with its signing secret: the only time it is shown. Keep it in your
receiver's configuration and verify every delivery with it.`)
	events := fs.String("events", "", "comma-separated `events`: job.completed, job.failed (default both)")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "want exactly one URL")
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	e, err := c.CreateWebhook(background(), pos[0], eventsFlag(*events)...)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, e); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

func runWebhookList(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook list", stderr, g)
	setUsage(fs, "webhook list", "Lists your endpoints as a table: id, enabled, failures in a row, events, URL, why disabled.")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	l, err := c.ListWebhooks(background())
	if err != nil {
		return fail(stderr, err)
	}
	printEndpoints(stdout, l.Endpoints, false)
	return exitOK
}

func printEndpoints(w io.Writer, es []gen.WebhookEndpoint, withUser bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "ID\tENABLED\tFAILURES\tEVENTS\tURL\tDISABLED REASON"
	if withUser {
		head = "ID\tUSER\tENABLED\tFAILURES\tEVENTS\tURL\tDISABLED REASON"
	}
	fmt.Fprintln(tw, head)
	for _, e := range es {
		events := make([]string, len(e.EventTypes))
		for i, t := range e.EventTypes {
			events[i] = string(t)
		}
		reason := "-"
		if e.DisabledReason != nil {
			reason = *e.DisabledReason
		}
		user := ""
		if withUser && e.UserId != nil {
			user = *e.UserId + "\t"
		}
		fmt.Fprintf(tw, "%s\t%s%t\t%d\t%s\t%s\t%s\n", e.Id, user, e.Enabled, e.ConsecutiveFailures, strings.Join(events, ","), e.Url, reason)
	}
	tw.Flush()
}

// idsAndClient parses fs over args, takes n ids (endpoint, delivery) as
// the positional arguments, and makes the API client; !ok: exit with code.
func idsAndClient(g *globals, fs *flag.FlagSet, args []string, stderr io.Writer, n int) (_ *client.Client, ids []string, code int, ok bool) {
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return nil, nil, code, false
	}
	if ids, code, ok = uuidArgs(fs, stderr, pos, n); !ok {
		return nil, nil, code, false
	}
	c, err := g.newClient()
	if err != nil {
		return nil, nil, fail(stderr, err), false
	}
	return c, ids, exitOK, true
}

// printResult prints v as JSON, or fails with err.
func printResult(stdout, stderr io.Writer, v any, err error) int {
	if err != nil {
		return fail(stderr, err)
	}
	if err := printJSON(stdout, v); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// runOnWebhook runs call on one endpoint id and prints its answer as JSON.
func runOnWebhook[T any](g *globals, args []string, stdout, stderr io.Writer, name, help string, call func(*client.Client, string) (*T, error)) int {
	fs := newFlagSet(name, stderr, g)
	setUsage(fs, name+" ID", help)
	c, ids, code, ok := idsAndClient(g, fs, args, stderr, 1)
	if !ok {
		return code
	}
	v, err := call(c, ids[0])
	return printResult(stdout, stderr, v, err)
}

func runWebhookGet(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnWebhook(g, args, stdout, stderr, "webhook get", "Prints the endpoint and its health as JSON.",
		func(c *client.Client, id string) (*gen.WebhookEndpoint, error) { return c.GetWebhook(background(), id) })
}

func runWebhookRotate(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnWebhook(g, args, stdout, stderr, "webhook rotate", `
Gives the endpoint a new signing secret and prints it (once). For 24 hours
deliveries carry signatures by both secrets, so the receiver can switch.`,
		func(c *client.Client, id string) (*gen.WebhookEndpoint, error) {
			return c.RotateWebhookSecret(background(), id)
		})
}

func runWebhookTest(g *globals, args []string, stdout, stderr io.Writer) int {
	return runOnWebhook(g, args, stdout, stderr, "webhook test", "Queues a webhook.test event to the endpoint and prints its delivery.",
		func(c *client.Client, id string) (*gen.WebhookDelivery, error) {
			return c.TestWebhook(background(), id)
		})
}

func runWebhookDelete(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook delete", stderr, g)
	setUsage(fs, "webhook delete ID", "Deletes the endpoint and its deliveries, sent or not.")
	c, ids, code, ok := idsAndClient(g, fs, args, stderr, 1)
	if !ok {
		return code
	}
	if err := c.DeleteWebhook(background(), ids[0]); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

func runWebhookUpdate(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook update", stderr, g)
	setUsage(fs, "webhook update [--new-url U] [--events E] [--enable | --disable] ID", `
Changes the endpoint and prints it. --enable also clears the reason jobsd
disabled it for; deliveries that had given up are not resent (replay them).`)
	url := fs.String("new-url", "", "the endpoint's new `URL` (--url is the API's)")
	events := fs.String("events", "", "comma-separated `events`: job.completed, job.failed")
	enable := fs.Bool("enable", false, "enable the endpoint")
	disable := fs.Bool("disable", false, "disable the endpoint")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	ids, code, ok := uuidArgs(fs, stderr, pos, 1)
	if !ok {
		return code
	}
	var u gen.UpdateWebhookRequest
	if *url != "" {
		u.Url = url
	}
	if *events != "" {
		ts := make([]gen.WebhookEventType, 0)
		for _, e := range eventsFlag(*events) {
			ts = append(ts, gen.WebhookEventType(e))
		}
		u.EventTypes = &ts
	}
	switch {
	case *enable && *disable:
		return usageError(fs, stderr, "--enable and --disable together")
	case *enable || *disable:
		on := *enable
		u.Enabled = &on
	}
	if u.Url == nil && u.EventTypes == nil && u.Enabled == nil {
		return usageError(fs, stderr, "nothing to change: give --new-url, --events, --enable or --disable")
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	e, err := c.UpdateWebhook(background(), ids[0], u)
	return printResult(stdout, stderr, e, err)
}

func runWebhookDeliveries(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook deliveries", stderr, g)
	setUsage(fs, "webhook deliveries [--limit N] [--cursor C] ID", `
Lists the endpoint's deliveries, newest first, as a table: delivery id (the
webhook-id), event, job, status, attempts, last answer, latency, next retry,
last error. The cursor of the next page, if any, is printed on stderr.`)
	limit := fs.Int("limit", 0, "deliveries per page, 1 to 100 (server default 20)")
	cursor := fs.String("cursor", "", "start at this `cursor`")
	c, ids, code, ok := idsAndClient(g, fs, args, stderr, 1)
	if !ok {
		return code
	}
	page, err := c.WebhookDeliveries(background(), ids[0], *limit, *cursor)
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT\tJOB\tSTATUS\tATTEMPTS\tCODE\tLATENCY\tNEXT\tERROR")
	for _, d := range page.Deliveries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Id, d.EventType, orDash(d.JobId), d.Status, d.Attempts,
			orDash(d.LastStatusCode), msOrDash(d.LastLatencyMs), orDash(d.NextAttemptAt), orDash(d.LastError))
	}
	tw.Flush()
	if page.NextCursor != nil {
		fmt.Fprintf(stderr, "more deliveries: --cursor %s\n", *page.NextCursor)
	}
	return exitOK
}

func orDash[T any](p *T) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func msOrDash(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%dms", *p)
}

func runWebhookReplay(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("webhook replay", stderr, g)
	setUsage(fs, "webhook replay ID DELIVERY_ID", "Queues the delivery again at once (same webhook-id, fresh retries) and prints it.")
	c, ids, code, ok := idsAndClient(g, fs, args, stderr, 2)
	if !ok {
		return code
	}
	d, err := c.ReplayWebhookDelivery(background(), ids[0], ids[1])
	return printResult(stdout, stderr, d, err)
}

func runAdminWebhooks(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin webhooks", stderr, g)
	setUsage(fs, "admin webhooks [--limit N] [--cursor C]", `
Lists every user's webhook endpoints with their owner and health, oldest
first. The cursor of the next page, if any, is printed on stderr.`)
	limit := fs.Int("limit", 0, "endpoints per page, 1 to 100 (server default 20)")
	cursor := fs.String("cursor", "", "start at this `cursor`")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	page, err := c.AdminWebhooks(background(), *limit, *cursor)
	if err != nil {
		return fail(stderr, err)
	}
	printEndpoints(stdout, page.Endpoints, true)
	if page.NextCursor != nil {
		fmt.Fprintf(stderr, "more endpoints: --cursor %s\n", *page.NextCursor)
	}
	return exitOK
}
