package model

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"unicode/utf8"
)

// DefaultMaxTokens is the output budget used when a Request leaves MaxTokens 0.
const DefaultMaxTokens = 1024

// Provider names reported by Name and used in Error.Provider.
const (
	ProviderBedrock = "Bedrock"
	ProviderOpenAI  = "OpenAI-compatible"
	ProviderLocal   = "local"
)

// Request is one question to a model.
type Request struct {
	ModelID   string // empty = provider default
	System    string // system prompt; may be empty
	Prompt    string // the user message
	MaxTokens int    // 0 = DefaultMaxTokens
	JSON      bool   // the caller wants a single JSON object back
}

// Response is a model's answer.
type Response struct {
	Text         string // the answer's text
	InputTokens  int    // tokens the provider counted in the request, 0 if unknown
	OutputTokens int    // tokens the provider counted in the answer, 0 if unknown
}

// Provider is an LLM backend.
type Provider interface {
	// Name returns ProviderBedrock, ProviderOpenAI or ProviderLocal.
	Name() string
	// Converse asks the model once (no retries) and returns its answer or an *Error.
	Converse(ctx context.Context, req Request) (Response, error)
}

// IsLocal reports whether p is the local, network-free provider, whose
// answers are extractive previews rather than model output.
func IsLocal(p Provider) bool { return p != nil && p.Name() == ProviderLocal }

// Error is a classified provider failure.
type Error struct {
	Provider  string // "Bedrock", "OpenAI-compatible", "local"
	Code      string // e.g. ThrottlingException, ValidationException, http_429, Timeout, ConnectionError
	Message   string // provider's message, trimmed to 200 chars, single line
	Retryable bool   // whether another attempt may succeed
}

// Error implements error.
func (e *Error) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "retryable"
	}
	return fmt.Sprintf("model: %s %s: %s (%s)", e.Provider, e.Code, e.Message, kind)
}

// ClientMessage is the text a failed job's `error` field shows. For Bedrock it
// is exactly "Bedrock API error: <Code> - <Message>"; for OpenAI-compatible
// servers "Model API error: <status> - <Message>" (status is the HTTP status
// code, or the Code for failures without one); for the local provider
// "Local model error: <Code> - <Message>".
func (e *Error) ClientMessage() string {
	switch e.Provider {
	case ProviderBedrock:
		return fmt.Sprintf("Bedrock API error: %s - %s", e.Code, e.Message)
	case ProviderOpenAI:
		return fmt.Sprintf("Model API error: %s - %s", strings.TrimPrefix(e.Code, "http_"), e.Message)
	default:
		return fmt.Sprintf("Local model error: %s - %s", e.Code, e.Message)
	}
}

type attemptKey struct{}

// WithAttempt returns a context carrying the job's attempt number (1 for the
// first attempt). The worker sets it before calling a handler.
func WithAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// AttemptFrom returns the attempt number set by WithAttempt, or 1 when none was set.
func AttemptFrom(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey{}).(int); ok && n > 0 {
		return n
	}
	return 1
}

// cleanMessage makes a provider message single-line and at most 200 characters.
func cleanMessage(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > 200 {
		r := []rune(s)
		s = string(r[:199]) + "…"
	}
	return s
}

// transportError classifies context and network failures, or returns nil.
func transportError(provider string, ctx context.Context, err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return &Error{Provider: provider, Code: "Timeout", Message: "the model did not answer in time", Retryable: true}
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return &Error{Provider: provider, Code: "Cancelled", Message: "the request was cancelled", Retryable: true}
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) {
		return &Error{Provider: provider, Code: "ConnectionError", Message: "could not connect to the model service", Retryable: true}
	}
	return nil
}

func maxTokens(n int) int {
	if n <= 0 {
		return DefaultMaxTokens
	}
	return n
}

// jsonInstruction is appended to the system prompt of JSON requests.
const jsonInstruction = "Answer with a single JSON object only: no prose, no Markdown code fences."

func systemPrompt(req Request) string {
	if !req.JSON {
		return req.System
	}
	if req.System == "" {
		return jsonInstruction
	}
	return req.System + "\n\n" + jsonInstruction
}
