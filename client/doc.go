// Package client is a small hand-written layer over the generated typed
// client in package gen for the jobsd API.
//
// It adds what every caller of the API needs and the generated code leaves
// out: a bearer token on every request (TokenSource), one error type for
// every non-2xx answer (*APIError, with IsNotFound and friends), helpers
// that build the create requests, paging over the job list (Client.All),
// typed access to a completed job's result (DecodeResult), and
// Client.Wait, which follows a job to COMPLETED or FAILED as cheaply as
// the server allows.
//
// # Waiting for a job
//
// Client.Wait long-polls: it sends GET /api/jobs/{id}?waitSeconds=30 with
// the job's last ETag in If-None-Match, so the server answers as soon as the
// job changes and otherwise holds the request for up to 30 seconds. A server
// that ignores waitSeconds gives itself away by answering an unchanged job
// at once with a 304; Wait then falls back to conditional polls, sleeping the
// server's Retry-After (3 seconds by default) between them. A FAILED job is
// returned together with a *JobFailedError carrying the job's error.
//
// Wait and every other method honour their context; the default HTTP client
// has no overall timeout of its own, so long polls are not cut short. Bound
// a wait with context.WithTimeout.
//
// # Typical use
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithToken(token))
//	job, err := c.CreatePreview(ctx, gen.PromptPreviewRequest{Prompt: "..."}, client.CreateOptions{})
//	job, err = c.Wait(ctx, job.Id.String())
//	res, err := client.DecodeResult[client.AIPreviewResult](job)
package client
