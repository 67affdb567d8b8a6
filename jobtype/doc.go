// Package jobtype holds jobsd's job handlers: one [Handler] per job type,
// found through [Registry]. A handler receives the job's stored input (the
// JSON of the type's input object in openapi.yaml) and returns the job's
// result (a JSON object valid against the type's result schema) or an error.
//
// # Handlers
//
//   - AI_PREVIEW: renders the PromptPreviewRequest's `{{name}}` / `{{ name }}`
//     placeholders from its variables and asks [Env.Model]; result {"output"}.
//     The local provider answers with an extractive preview, so the
//     [model] markers ([[simulate:throttle]] ...) work through AI_PREVIEW.
//   - PARSE_DOCUMENT: text/plain (paragraphs; short title-like lines become
//     level-1 headings), text/markdown (ATX headings), DOCX (word/document.xml;
//     Title, Heading1..6 and outline levels become headings) and PDF (text
//     extraction with github.com/ledongthuc/pdf; counts.pages). No model call.
//     PDF and DOCX are parsed in a child process ([Parser], internal/sandbox)
//     that is killed at [ParseOptions]' time and memory limits, because a
//     hostile file can make their parsers loop, recurse or allocate without
//     end (testdata/hostile holds such files).
//   - GAP_DETECTION and RISK_ANALYSIS: analyse `text` or the sections of a
//     referenced COMPLETED PARSE_DOCUMENT job. When the configured provider is
//     the local one ([model.IsLocal]) they run deterministic algorithms
//     (lexical evidence search; a keyword risk catalogue) after applying the
//     markers found in the analysed text with [model.Simulate]. With a real
//     provider they ask it for JSON in the result's shape and validate it
//     strictly; output that fails validation fails the attempt (retryable).
//   - REPORT_GENERATION: Markdown from the title, the given sections and the
//     results of referenced COMPLETED jobs (any type, rendered by type). No
//     model call.
//
// Work is bounded: analysed text is cut at [MaxAnalysedChars], sentences
// considered at [MaxSentences], evidence quotes at 300 characters, reports
// at [MaxReportBytes], and any result at [MaxResultBytes].
//
// # Client messages
//
// A failed job's `error` field is [ClientMessage] of the handler's error; raw
// Go errors never reach clients. The catalogue:
//
//	Bedrock API error: <Code> - <Message>      provider errors (*model.Error), e.g.
//	                                           "Bedrock API error: ThrottlingException - Rate exceeded";
//	                                           retryable per the provider's classification
//	Model API error: <status> - <message>      OpenAI-compatible provider errors
//	Local model error: <Code> - <Message>      local provider errors (simulated failures)
//	Invalid model output: <short reason>       retryable
//	Invalid input: field "<name>" <reason>     permanent
//	Referenced job <id> not found              permanent; the same text whether the job
//	                                           does not exist or belongs to another user
//	Referenced job <id> is not COMPLETED       permanent
//	Referenced job <id> is not a PARSE_DOCUMENT job
//	                                           permanent (GAP_DETECTION, RISK_ANALYSIS)
//	Document could not be parsed within its limits
//	                                           permanent; a PDF or DOCX whose parse was
//	                                           stopped at its time, memory or CPU limit,
//	                                           or made the parser crash
//	Internal error while processing the job    any other error (retryable)
//
// "Cancelled by user" and "Worker lost" are written by the worker, not here.
package jobtype
