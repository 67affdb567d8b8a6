package main

import (
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/jobsd/jobsd/jobtype"
)

// parseOptions reads the limits of PDF and DOCX parsing, which runs in
// child processes of the worker (see internal/sandbox):
// JOBS_PARSE_TIMEOUT, JOBS_PARSE_MEMORY and JOBS_PARSE_CONCURRENCY.
func parseOptions(log *slog.Logger) (jobtype.ParseOptions, error) {
	opts := jobtype.ParseOptions{Log: log}
	var err error
	if opts.Timeout, err = envDuration("JOBS_PARSE_TIMEOUT", jobtype.DefaultParseTimeout); err != nil {
		return opts, err
	}
	if opts.Timeout == 0 {
		return opts, usagef("JOBS_PARSE_TIMEOUT must be more than 0")
	}
	if opts.Memory, err = envBytes("JOBS_PARSE_MEMORY", jobtype.DefaultParseMemory); err != nil {
		return opts, err
	}
	// Below this a Go child cannot even start and parse a small file.
	if opts.Memory < 32<<20 {
		return opts, usagef("JOBS_PARSE_MEMORY must be at least 32MiB")
	}
	if opts.Concurrency, err = envInt("JOBS_PARSE_CONCURRENCY", jobtype.DefaultParseConcurrency); err != nil {
		return opts, err
	}
	if opts.Concurrency == 0 {
		return opts, usagef("JOBS_PARSE_CONCURRENCY must be at least 1")
	}
	return opts, nil
}

// envBytes reads a size: a number of bytes, or one with a KiB, MiB or GiB
// suffix ("512MiB").
func envBytes(name string, def int64) (int64, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	s, unit := strings.TrimSpace(v), int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, unit = strings.TrimSpace(strings.TrimSuffix(s, suffix)), u
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/unit {
		return 0, usagef("%s=%q is not a size such as 512MiB", name, v)
	}
	return n * unit, nil
}
