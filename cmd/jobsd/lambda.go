package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobsd/jobsd/dispatch"
	"github.com/jobsd/jobsd/jobtype"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// The values of JOBS_DISPATCH: how workers learn of new jobs.
const (
	dispatchListen = "listen" // workers claim from the table, woken by LISTEN/NOTIFY
	dispatchSQS    = "sqs"    // the API sends a message per job to SQS (an outbox)
)

// runLambda runs the worker as an AWS Lambda function fed by SQS, and its
// maintenance round on a schedule (see package dispatch). It talks to the
// Lambda Runtime API named by AWS_LAMBDA_RUNTIME_API, as every Lambda
// function does, so it runs only inside Lambda or an emulator of it.
func runLambda(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lambda", flag.ContinueOnError)
	db, log, err := startProcess(fs, args)
	if err != nil {
		return err
	}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		return usagef("AWS_LAMBDA_RUNTIME_API is not set: jobsd lambda runs as an AWS Lambda function (or under the Lambda Runtime Interface Emulator)")
	}
	cfg, err := workerConfig(log)
	if err != nil {
		return err
	}
	if err := allowCrashMarkers(false); err != nil {
		return err
	}
	queue, err := sqsQueue(ctx)
	if err != nil {
		return err
	}
	reserve, err := envDuration("JOBS_LAMBDA_RESERVE", 5*time.Second)
	if err != nil {
		return err
	}
	capDelay, err := envDuration("JOBS_LAMBDA_CAP_DELAY", 30*time.Second)
	if err != nil {
		return err
	}
	if capDelay <= 0 || capDelay > dispatch.MaxDelay {
		return usagef("JOBS_LAMBDA_CAP_DELAY must be more than 0 and at most %v (SQS's longest DelaySeconds)", dispatch.MaxDelay)
	}
	// One instance runs one batch at a time: a connection for claims and
	// outcomes and one for heartbeats and handlers' reads; behind RDS Proxy
	// (with JOBS_DB_POOLER=transaction, so that nothing pins a session)
	// many instances share the database's connections. No LISTEN, no
	// migrations: no direct connection.
	conns, err := envInt("JOBS_DB_MAX_CONNS", 2)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, db.url, db.storeOptions(store.Options{MaxOpenConns: max(conns, 1)}))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := lambdaHandlers(st, &cfg); err != nil {
		return err
	}
	h, err := dispatch.NewHandler(dispatch.Config{Worker: cfg, Queue: queue, Log: log, Reserve: reserve,
		CapDelay: capDelay, Host: lambdaHost()})
	if err != nil {
		return err
	}
	log.Info("lambda function ready", "worker", h.ID(), "job_timeout", cfg.JobTimeout.String(), "reserve", reserve.String(),
		"db_conns", conns, "user_concurrency", cfg.UserConcurrency)
	// WithEnableSIGTERM registers an internal extension, which makes Lambda
	// send the runtime SIGTERM before it ends the instance (without one it
	// only sends SIGKILL); the instance then leaves the worker registry. The
	// loop itself never returns: it exits the process when the Runtime API
	// fails.
	shutdown := make(chan struct{})
	go lambda.StartWithOptions(h.Invoke, lambda.WithContext(ctx),
		lambda.WithEnableSIGTERM(func() { close(shutdown) }))
	<-shutdown
	unregisterLambda(h, log)
	return nil
}

// unregisterWithin bounds the unregistration at shutdown: Lambda gives a
// runtime with an internal extension about 500 ms after SIGTERM before it
// sends SIGKILL. An entry not removed ages out of the listing in a minute.
const unregisterWithin = 300 * time.Millisecond

func unregisterLambda(h *dispatch.Handler, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), unregisterWithin)
	defer cancel()
	if err := h.Unregister(ctx); err != nil {
		log.Warn("worker registry: unregister failed; the entry ages out", "err", err)
		return
	}
	log.Info("lambda instance shut down; unregistered", "worker", h.ID())
}

// lambdaHost names the instance in the worker registry: the function and
// its log stream, where its logs are (Lambda sets both; lambdacontext reads
// them), else the host name.
func lambdaHost() string {
	if lambdacontext.FunctionName == "" {
		return ""
	}
	if lambdacontext.LogStreamName == "" {
		return lambdacontext.FunctionName
	}
	return lambdacontext.FunctionName + " " + lambdacontext.LogStreamName
}

// lambdaHandlers wires the job types to the model provider, as newWorker
// does for the long-lived worker. No LISTEN: cancellations are seen by the
// heartbeat, as a lease that is no longer held.
func lambdaHandlers(st *store.Store, cfg *worker.Config) error {
	provider, err := model.New(model.ConfigFromEnv(os.Getenv))
	if err != nil {
		return usagef("%v", err)
	}
	cfg.Log.Info("model provider", "provider", provider.Name())
	parse, err := parseOptions(cfg.Log)
	if err != nil {
		return err
	}
	cfg.Store = st
	cfg.Handlers = jobtype.WorkerHandlers(st, provider, parse)
	cfg.Classify = jobtype.Classify
	return nil
}

// readDispatch reads JOBS_DISPATCH.
func readDispatch() (string, error) {
	switch v := envOr("JOBS_DISPATCH", dispatchListen); v {
	case dispatchListen, dispatchSQS:
		return v, nil
	default:
		return "", usagef("JOBS_DISPATCH=%q must be listen or sqs", v)
	}
}

// startDispatch starts the API's outbox sender when JOBS_DISPATCH=sqs: it
// sends each new job's message at once, and sweeps every
// JOBS_OUTBOX_SWEEP for rows another process left. stop waits for it.
func startDispatch(ctx context.Context, st *store.Store, log *slog.Logger) (stop func(), err error) {
	if mode, err := readDispatch(); err != nil || mode != dispatchSQS {
		return func() {}, err
	}
	queue, err := sqsQueue(ctx)
	if err != nil {
		return nil, err
	}
	every, err := envDuration("JOBS_OUTBOX_SWEEP", 10*time.Second)
	if err != nil {
		return nil, err
	}
	if every <= 0 {
		return nil, usagef("JOBS_OUTBOX_SWEEP must be more than 0")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); dispatch.RunSender(ctx, st, queue, every, log) }()
	log.Info("dispatching new jobs to SQS", "sweep", every.String())
	return func() { cancel(); <-done }, nil
}

// outboxOn reports whether the API must write outbox rows
// (JOBS_DISPATCH=sqs).
func outboxOn() (bool, error) {
	mode, err := readDispatch()
	return mode == dispatchSQS, err
}

// sqsQueue is the job queue: JOBS_SQS_QUEUE_URL, with credentials and
// region from the AWS default chain and JOBS_SQS_ENDPOINT as an endpoint
// override (a local SQS in tests).
func sqsQueue(ctx context.Context) (*dispatch.Queue, error) {
	url := os.Getenv("JOBS_SQS_QUEUE_URL")
	if url == "" {
		return nil, usagef("JOBS_SQS_QUEUE_URL is required with JOBS_DISPATCH=sqs and by jobsd lambda")
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	endpoint := os.Getenv("JOBS_SQS_ENDPOINT")
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return dispatch.NewQueue(client, url), nil
}
