package jobtype

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
	openapi_types "github.com/oapi-codegen/runtime/types"
)

// Bounds on the work a handler does.
const (
	// MaxResultBytes is the largest result a handler returns.
	MaxResultBytes = 4 << 20
	// MaxReportBytes caps a report's Markdown (and an AI preview's output).
	MaxReportBytes = 1 << 20
	// MaxAnalysedChars caps the text GAP_DETECTION and RISK_ANALYSIS read.
	MaxAnalysedChars = 200000
	// MaxSentences caps the sentences GAP_DETECTION and RISK_ANALYSIS consider.
	MaxSentences = 5000
)

// Env is what handlers may use besides their input.
type Env struct {
	// Model is the configured LLM provider.
	Model model.Provider
	// LoadJob returns a job of the same user (owner-scoped); it returns an
	// error wrapping ErrReferenceNotFound when the job does not exist OR
	// belongs to another user (indistinguishable).
	LoadJob func(ctx context.Context, id string) (*job.Job, error)
	// Parser parses PARSE_DOCUMENT's PDF and DOCX documents in child
	// processes under its limits; nil uses one with the default limits.
	Parser *Parser
}

// ErrReferenceNotFound is wrapped by Env.LoadJob's error for a missing or
// foreign job.
var ErrReferenceNotFound = errors.New("referenced job not found")

// Handler runs one attempt of a job: it returns the result JSON object or an
// error classified by IsRetryable and described by ClientMessage.
type Handler func(ctx context.Context, env Env, input json.RawMessage) (result json.RawMessage, err error)

// Registry returns the handler for each job type.
func Registry() map[job.Type]Handler {
	return map[job.Type]Handler{
		job.TypeAIPreview:        handleAIPreview,
		job.TypeParseDocument:    handleParseDocument,
		job.TypeGapDetection:     handleGapDetection,
		job.TypeRiskAnalysis:     handleRiskAnalysis,
		job.TypeReportGeneration: handleReportGeneration,
	}
}

// jobError is an error with a client message and a retry class.
type jobError struct {
	msg       string
	retryable bool
}

func (e *jobError) Error() string { return e.msg }

// Permanent returns an error that fails the job at once with clientMessage.
func Permanent(clientMessage string) error { return &jobError{msg: clientMessage} }

// Retryable returns an error that fails this attempt with clientMessage; the
// worker tries again while attempts remain.
func Retryable(clientMessage string) error { return &jobError{msg: clientMessage, retryable: true} }

// internalMessage is the client message of unclassified errors.
const internalMessage = job.ErrTextInternal

// ClientMessage returns the text for a failed job's `error` field: a
// *model.Error's ClientMessage, the message given to Permanent or Retryable,
// and "Internal error while processing the job" for anything else.
func ClientMessage(err error) string {
	var me *model.Error
	var je *jobError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &je):
		return je.msg
	case errors.As(err, &me):
		return me.ClientMessage()
	default:
		return internalMessage
	}
}

// IsRetryable reports whether another attempt may succeed: a *model.Error's
// Retryable flag; true for Retryable, false for Permanent; true for
// context.DeadlineExceeded and for unknown errors.
func IsRetryable(err error) bool {
	var me *model.Error
	var je *jobError
	switch {
	case errors.As(err, &je):
		return je.retryable
	case errors.As(err, &me):
		return me.Retryable
	default:
		return true
	}
}

// invalidInput is the permanent `Invalid input: field "<name>" <reason>`.
func invalidInput(field, reason string) error {
	return Permanent(fmt.Sprintf("Invalid input: field %q %s", field, reason))
}

// invalidOutput is the retryable `Invalid model output: <reason>`.
func invalidOutput(reason string) error {
	return Retryable("Invalid model output: " + reason)
}

// decodeInput decodes a job's input strictly into v.
func decodeInput(input json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return invalidInput("input", "must be a single JSON object")
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return invalidInput(te.Field, "has the wrong type")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalidInput(name, "is not allowed")
	case strings.Contains(err.Error(), "base64"):
		return invalidInput("document", "is not valid base64")
	default:
		return invalidInput("input", "is not a valid JSON object")
	}
}

// marshalResult encodes a result and enforces MaxResultBytes.
func marshalResult(v any, field string) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding result: %w", err)
	}
	if len(b) > MaxResultBytes {
		return nil, tooLarge(field)
	}
	return b, nil
}

// tooLarge is the invalid input whose result would pass MaxResultBytes.
func tooLarge(field string) error {
	return invalidInput(field, fmt.Sprintf("produces a result larger than %d MiB", MaxResultBytes>>20))
}

// loadReference loads a referenced job, requires it to be COMPLETED and, when
// wantType is not empty, of that type.
func loadReference(ctx context.Context, env Env, id string, wantType job.Type) (*job.Job, error) {
	if env.LoadJob == nil {
		return nil, errors.New("jobtype: Env.LoadJob is nil")
	}
	ref, err := env.LoadJob(ctx, id)
	if errors.Is(err, ErrReferenceNotFound) {
		return nil, Permanent(fmt.Sprintf("Referenced job %s not found", id))
	}
	if err != nil {
		return nil, fmt.Errorf("loading job %s: %w", id, err)
	}
	if ref.Status != job.StatusCompleted {
		return nil, Permanent(fmt.Sprintf("Referenced job %s is not COMPLETED", id))
	}
	if wantType != "" && ref.Type != wantType {
		return nil, Permanent(fmt.Sprintf("Referenced job %s is not a %s job", id, wantType))
	}
	return ref, nil
}

// documentText returns the analysed text: text, or the sections of the
// referenced PARSE_DOCUMENT job. Exactly one must be given.
func documentText(ctx context.Context, env Env, text *string, jobID *openapi_types.UUID) (string, error) {
	hasJob := jobID != nil
	switch {
	case text != nil && hasJob:
		return "", invalidInput("documentJobId", "must not be given together with text")
	case text != nil:
		if strings.TrimSpace(*text) == "" {
			return "", invalidInput("text", "is empty")
		}
		return *text, nil
	case hasJob:
		id := jobID.String()
		ref, err := loadReference(ctx, env, id, job.TypeParseDocument)
		if err != nil {
			return "", err
		}
		var parsed parseResult
		if err := json.Unmarshal(ref.Result, &parsed); err != nil {
			return "", fmt.Errorf("decoding result of job %s: %w", id, err)
		}
		return parsed.plainText(), nil
	default:
		return "", invalidInput("text", "or documentJobId is required")
	}
}

// askJSON asks the model for a JSON object and decodes it into v; output
// that is not one JSON object is a retryable invalid model output.
func askJSON(ctx context.Context, env Env, system, prompt string, v any) error {
	resp, err := env.Model.Converse(ctx, model.Request{System: system, Prompt: prompt, JSON: true, MaxTokens: 4096})
	if err != nil {
		return err
	}
	text := strings.TrimSpace(resp.Text)
	if text == "" {
		return invalidOutput("the model returned no text")
	}
	// Tolerate a Markdown code fence or prose around the object.
	if i, j := strings.Index(text, "{"), strings.LastIndex(text, "}"); i >= 0 && j > i {
		text = text[i : j+1]
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidOutput("the model's answer is not a JSON object of the expected shape")
	}
	return nil
}
