// Command jobsd is the jobs service: the API, the worker, migrations, dev
// tokens, and a one-command development setup.
//
//	jobsd serve            the HTTP API
//	jobsd worker           processes jobs
//	jobsd deliver          sends webhook events, at a lower CPU priority
//	jobsd lambda           processes jobs as an AWS Lambda function fed by SQS
//	jobsd migrate up|down|status
//	jobsd token --sub alice [--admin] [--ttl 1h]
//	jobsd dev              API + worker + local token issuer on 127.0.0.1:8080
//	jobsd version          the module version, VCS revision and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/jobsd/jobsd/internal/buildinfo"
	"github.com/jobsd/jobsd/internal/sandbox"
)

const usage = `usage: jobsd <command> [flags]

commands:
  serve     run the HTTP API
  worker    run the job worker
  deliver   send webhook events (the APIs' delivery loop alone, at a lower CPU priority)
  lambda    run the job worker as an AWS Lambda function fed by SQS
  migrate   up | down | status: manage the database schema
  token     print a token from the local dev issuer
  dev       run API, worker and a local token issuer against a throwaway database
  version   print the module version, VCS revision and Go version of this binary

Run 'jobsd <command> -h' for the command's flags and the environment
variables it reads; flags win over the environment.
`

func main() {
	// A PDF or DOCX parse re-executes this binary (internal/sandbox): in
	// that child, Main parses and exits before anything below runs.
	sandbox.Main()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	commands := map[string]func(context.Context, []string) error{
		"serve":   runServe,
		"worker":  runWorker,
		"deliver": runDeliver,
		"lambda":  runLambda,
		"migrate": runMigrate,
		"token":   runToken,
		"dev":     runDev,
		"version": runVersion,
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		if os.Args[1] != "-h" && os.Args[1] != "--help" && os.Args[1] != "help" {
			fmt.Fprintf(os.Stderr, "jobsd: unknown command %q\n\n", os.Args[1])
		}
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := cmd(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // the usage text is printed
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "jobsd %s: %v\n", os.Args[1], err)
			os.Exit(2)
		}
		slog.Error("jobsd "+os.Args[1]+" failed", "err", err)
		os.Exit(1)
	}
}

// usageError is a bad or missing setting; it exits 2 with its message.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// runVersion prints which build this is, so a log or a bug report can name
// the exact commit.
func runVersion(_ context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	return buildinfo.Fprint(os.Stdout, "jobsd", buildinfo.Read())
}
