// Command jobsctl is a command-line client of the jobsd API: it creates jobs,
// shows and lists them, cancels them, waits for them to finish, and manages
// webhook endpoints.
//
//	jobsctl [--url URL] [--token TOKEN] <command> [flags] [args]
//
// Run `jobsctl -h` for the commands and `jobsctl <command> -h` for each
// command's flags. Exit status: 0 success (for wait: COMPLETED), 1 the job
// FAILED, 2 usage error, 3 any other error.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/jobsd/jobsd/internal/buildinfo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the job ended FAILED
	exitUsage  = 2
	exitError  = 3 // network, API or local errors
)

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(g *globals, args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"create", "<preview|TYPE> [flags]", "create a job and print it", runCreate},
	{"get", "ID", "print a job as JSON", runGet},
	{"list", "[flags]", "list your jobs, newest first", runList},
	{"cancel", "ID", "cancel a PENDING or PROCESSING job", runCancel},
	{"wait", "ID [--timeout 10m]", "wait for a job to finish and print it", runWait},
	{"webhook", "<command> [flags]", "your webhook endpoints: create, list, get, update, delete, rotate, test, deliveries, replay", runWebhook},
	{"admin", "<command> [flags]", "the operator's API (an admin's token): get, list, cancel, requeue, stats, workers, webhooks", runAdmin},
	{"version", "", "print the module version, VCS revision and Go version", runVersion},
}

const usageHead = `jobsctl is a client of the jobsd API.

Usage:
  jobsctl [--url URL] [--token TOKEN] <command> [flags] [args]

Commands:
`

const usageTail = `
Global flags (also accepted after the command):
  --url URL      API base URL (env JOBS_URL, default http://127.0.0.1:8080)
  --token TOKEN  bearer token (env JOBS_TOKEN)

Exit status: 0 success (wait: the job COMPLETED), 1 the job FAILED,
2 usage error, 3 any other error (network, or the API's 4xx/5xx message).

Run 'jobsctl <command> -h' for a command's flags.
`

// run is the whole program: args without the program name.
func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	fs := newFlagSet("jobsctl", stderr, g)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		for _, c := range commands {
			fmt.Fprintf(fs.Output(), "  %-7s %-26s %s\n", c.name, c.args, c.summary)
		}
		fmt.Fprint(fs.Output(), usageTail)
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	if rest[0] == "help" {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	for _, c := range commands {
		if c.name == rest[0] {
			return c.run(g, rest[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "jobsctl: unknown command %q (run 'jobsctl -h')\n", rest[0])
	return exitUsage
}

// runVersion prints which build of jobsctl this is; it needs no API.
func runVersion(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr, g)
	setUsage(fs, "version", "Prints the module version, VCS revision (and whether the tree was modified)\nand Go version this jobsctl was built from.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "version takes no arguments")
	}
	if err := buildinfo.Fprint(stdout, "jobsctl", buildinfo.Read()); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}
