package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobsd/jobsd/tracing"
)

// startTracing turns traces on when the OTEL_* variables ask for it (see
// package tracing) and returns what flushes them at exit, after everything
// that makes spans has stopped.
func startTracing(ctx context.Context, service string, log *slog.Logger) (flush func(), err error) {
	shutdown, err := tracing.Setup(ctx, service, log)
	if err != nil {
		return nil, err
	}
	if tracing.Enabled() {
		log.Info("tracing on: exporting spans over OTLP/HTTP", "service", service)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("tracing shutdown", "err", err)
		}
	}, nil
}
