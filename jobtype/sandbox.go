package jobtype

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jobsd/jobsd/internal/sandbox"
)

// ParseLimitsMessage is the permanent client error of a PDF or DOCX whose
// parsing was stopped at a limit (time, memory, CPU) or killed the parser.
const ParseLimitsMessage = "Document could not be parsed within its limits"

// Defaults of ParseOptions.
const (
	DefaultParseTimeout     = 30 * time.Second
	DefaultParseMemory      = 512 << 20
	DefaultParseConcurrency = 2
)

// sandboxParse is the name the child-process parser is registered under.
const sandboxParse = "parse-document"

func init() { sandbox.Register(sandboxParse, parseInChild) }

// ParseOptions bound PARSE_DOCUMENT's parsing of PDF and DOCX, the formats
// whose parsers run third-party or decompression code over untrusted bytes.
// Each such parse runs in a child process (internal/sandbox) that is killed
// at these limits; plain text and Markdown are parsed in process (linear
// time, no decompression). Zero fields take the defaults.
type ParseOptions struct {
	// Timeout is one parse's wall-clock budget, from the child's start
	// (default 30 s). The job's own deadline still applies.
	Timeout time.Duration
	// Memory is the most resident memory one parse may use, in bytes
	// (default 512 MiB).
	Memory int64
	// Concurrency is how many parses one worker process runs at once
	// (default 2); a parse waiting for a slot honours its context.
	Concurrency int
	// Log receives one warning per parse stopped at a limit; nil uses
	// slog.Default().
	Log *slog.Logger
	// Observe, when set, is called after every child parse with its
	// figures (tests and measurements use it).
	Observe func(ParseStats)
}

// ParseStats describe one child parse.
type ParseStats struct {
	ContentType string
	// PeakRSS is the child's peak resident memory in bytes.
	PeakRSS int64
	// Wall is the child's lifetime; CPU its user plus system time.
	Wall, CPU time.Duration
	// Limit is why the child was stopped: "time", "memory", "cpu",
	// "output" or "crash" (internal/sandbox's Reason); "" when it was not.
	Limit string
	// Err is the parse's error as the handler returns it (nil on success).
	Err error
}

// Parser runs PDF and DOCX parsing in child processes under ParseOptions,
// at most Concurrency at a time. One Parser is shared by a worker's jobs.
type Parser struct {
	opts  ParseOptions
	slots chan struct{}
}

// NewParser returns a Parser with opts' zero fields set to the defaults.
func NewParser(opts ParseOptions) *Parser {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultParseTimeout
	}
	if opts.Memory <= 0 {
		opts.Memory = DefaultParseMemory
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultParseConcurrency
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Parser{opts: opts, slots: make(chan struct{}, opts.Concurrency)}
}

// defaultParser serves handlers called with an Env without a Parser.
var defaultParser = sync.OnceValue(func() *Parser { return NewParser(ParseOptions{}) })

func (env Env) parser() *Parser {
	if env.Parser != nil {
		return env.Parser
	}
	return defaultParser()
}

// childReply is what the child writes: the result, or the client message
// and retry class of its error (plus the error's text for the log).
type childReply struct {
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	Retryable bool            `json:"retryable,omitempty"`
	Detail    string          `json:"detail,omitempty"`
}

// parseInChild runs in the child: its input is the content type, a
// newline, and the document.
func parseInChild(input []byte) []byte {
	ct, doc, _ := bytes.Cut(input, []byte("\n"))
	var (
		res parseResult
		err error
	)
	switch string(ct) {
	case ContentTypeDOCX:
		res, err = parseDOCX(doc)
	case ContentTypePDF:
		res, err = parsePDF(doc)
	default:
		err = fmt.Errorf("no child parser for %q", ct)
	}
	var reply childReply
	if err == nil {
		reply.Result, err = marshalResult(res, "document")
	}
	if err != nil {
		reply = childReply{Error: ClientMessage(err), Retryable: IsRetryable(err), Detail: err.Error()}
	}
	out, err := json.Marshal(reply)
	if err != nil {
		out, _ = json.Marshal(childReply{Error: internalMessage, Retryable: true, Detail: err.Error()})
	}
	return out
}

// parse parses a PDF or DOCX in a child process. It returns ctx.Err() when
// ctx ends first (waiting for a slot or parsing), the permanent
// ParseLimitsMessage when the child was stopped at a limit or died, the
// parser's own error (e.g. not a readable PDF), or an internal error when
// the child could not be run.
func (p *Parser) parse(ctx context.Context, contentType string, doc []byte) (json.RawMessage, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.slots }()

	input := make([]byte, 0, len(contentType)+1+len(doc))
	input = append(append(append(input, contentType...), '\n'), doc...)
	out, stats, runErr := sandbox.Run(ctx, sandboxParse, input, sandbox.Limits{
		Timeout: p.opts.Timeout,
		Memory:  p.opts.Memory,
		// The child refuses results over MaxResultBytes itself; anything
		// much longer is not a reply.
		MaxOutput: MaxResultBytes + 64<<10,
	})
	res, err := p.reply(ctx, out, runErr)
	if p.opts.Observe != nil {
		st := ParseStats{ContentType: contentType, PeakRSS: stats.PeakRSS, Wall: stats.Wall, CPU: stats.CPU, Err: err}
		if le := (*sandbox.LimitError)(nil); errors.As(runErr, &le) {
			st.Limit = string(le.Reason)
		}
		p.opts.Observe(st)
	}
	return res, err
}

// reply turns the child's output and sandbox.Run's error into the
// handler's outcome.
func (p *Parser) reply(ctx context.Context, out []byte, runErr error) (json.RawMessage, error) {
	var le *sandbox.LimitError
	switch {
	case ctx.Err() != nil:
		// Cancelled or out of time: the worker decides what that means.
		return nil, ctx.Err()
	case errors.As(runErr, &le):
		p.opts.Log.Warn("document parse stopped at a limit", "reason", le.Reason, "wall", le.Stats.Wall,
			"cpu", le.Stats.CPU, "peak_rss", le.Stats.PeakRSS, "detail", le.Detail)
		return nil, fmt.Errorf("%w (%v)", Permanent(ParseLimitsMessage), runErr) //nolint:errorlint // the limit is detail, not a cause to match: the job fails for good
	case runErr != nil:
		return nil, fmt.Errorf("parsing in a child process: %w", runErr)
	}
	var reply childReply
	if err := json.Unmarshal(out, &reply); err != nil || (reply.Result == nil) == (reply.Error == "") {
		return nil, fmt.Errorf("parsing in a child process: unreadable reply (%d bytes)", len(out))
	}
	if reply.Error != "" {
		je := &jobError{msg: reply.Error, retryable: reply.Retryable}
		if reply.Detail != "" && reply.Detail != reply.Error {
			return nil, fmt.Errorf("%w (%s)", je, reply.Detail)
		}
		return nil, je
	}
	return reply.Result, nil
}
