// Package model is jobsd's single interface to large-language-model
// providers. A [Provider] answers one [Request] with one [Response]; which
// provider the service uses is configuration (see [Config] and [New]):
//
//   - "local" ([NewLocal]): the default for development and tests. It needs no
//     network and is deterministic. For a plain prompt it writes an
//     extractive preview (the most informative sentences and terms of the
//     prompt, labelled as a local preview). It does not invent JSON: the job
//     handlers (package jobtype) use their own deterministic algorithms when
//     [IsLocal] reports the local provider, and ask a real model for JSON
//     only when one is configured.
//   - "bedrock" ([NewBedrock]): Amazon Bedrock's Converse API through
//     aws-sdk-go-v2, with the SDK's own retries switched off so that the job
//     system owns the attempts.
//   - "openai" ([NewOpenAI]): any OpenAI-compatible chat-completions server
//     (OpenAI, Ollama, vLLM, llama.cpp ...).
//
// # Errors
//
// Every provider failure is an [*Error], classified as retryable or not, with
// a [Error.ClientMessage] that is safe to show to API clients: for Bedrock
// exactly "Bedrock API error: <Code> - <Message>", for OpenAI-compatible
// servers "Model API error: <HTTP status> - <message>", for the local provider
// "Local model error: <Code> - <Message>". Deadlines and timeouts become the
// retryable code "Timeout" and connection failures the retryable code
// "ConnectionError"; their client messages never contain addresses.
//
// # Attempts
//
// The worker that runs a job records the attempt number (1, 2, 3) in the
// context with [WithAttempt] before calling the job's handler; providers read
// it with [AttemptFrom]. Only the local provider's markers use it.
//
// # Markers
//
// Client developers can rehearse failures against the local provider by
// putting a marker anywhere in the prompt (for AI_PREVIEW jobs) or in the
// analysed text (GAP_DETECTION and RISK_ANALYSIS jobs, see package jobtype).
// See [Simulate]:
//
//	[[simulate:throttle]]        every attempt fails like a Bedrock throttle:
//	                             Provider "Bedrock", Code "ThrottlingException",
//	                             Message "Rate exceeded", retryable; after the
//	                             worker's 3 attempts the job is FAILED with
//	                             "Bedrock API error: ThrottlingException - Rate exceeded".
//	[[simulate:throttle-once]]   attempt 1 fails as above, attempt 2 succeeds.
//	[[simulate:throttle-twice]]  attempts 1 and 2 fail, attempt 3 succeeds.
//	[[simulate:slow=2s]]         waits that long first (Go duration, at most 60s;
//	                             the context's deadline still applies and then
//	                             yields the retryable code "Timeout").
//	[[simulate:permanent]]       fails with Code "ValidationException", not retryable.
//	[[simulate:invalid-output]]  succeeds with output the handler rejects
//	                             (the handler then fails the attempt with the
//	                             retryable "Invalid model output: ...").
//	[[simulate:crash]]           kills the worker process (SIGKILL) as soon as the
//	                             attempt reaches the model; [[simulate:crash=300ms]]
//	                             after that long. Every attempt does it, so after
//	                             3 attempts the job is FAILED with "Worker lost
//	                             while processing the job". Only where
//	                             AllowCrashMarkers is on (off by default).
//	[[simulate:crash-once]]      the same on attempt 1 only; attempt 2 succeeds.
//
// Without an attempt number in the context the attempt counts as 1. Markers
// mean nothing to the Bedrock and OpenAI-compatible providers.
package model
