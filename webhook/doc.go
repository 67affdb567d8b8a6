// Package webhook is jobsd's side of Standard Webhooks
// (https://www.standardwebhooks.com): the signing secrets, the three headers
// of a delivery and their signature, the receiver's check (Verify), and the
// HTTP client that sends deliveries without reaching what a user should
// not reach through jobsd (Client: https only, public addresses only,
// checked on the address actually dialled, no redirects, a deadline).
//
// It imports nothing of jobsd's, so that the Go client, the server and a
// receiver share one implementation.
package webhook
