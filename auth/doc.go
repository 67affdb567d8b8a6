// Package auth verifies Cognito-compatible bearer tokens for the HTTP API and
// provides a local token issuer for development and tests.
//
// # Tokens
//
// Every API request carries "Authorization: Bearer <jwt>" (see [BearerToken]).
// A [Verifier] accepts only RS256-signed JWTs whose header names a key ("kid")
// published in the issuer's JSON Web Key Set, and checks the claims the way
// Amazon Cognito user pools issue them:
//
//   - iss equals [Config.Issuer] exactly
//     (https://cognito-idp.{region}.amazonaws.com/{poolId} in production);
//   - exp is present and not past; nbf and iat are not in the future
//     (all with [Config.Leeway] of clock skew);
//   - token_use equals [Config.TokenUse] ("access" by default, or "id");
//   - access tokens: client_id is one of [Config.ClientIDs];
//     ID tokens: aud contains one of [Config.ClientIDs];
//   - sub is non-empty. It becomes [Principal.Subject], the owner of the data.
//
// cognito:groups becomes [Principal.Groups]; membership in
// [Config.AdminGroup] sets [Principal.Admin].
//
// # Key set cache
//
// Keys are fetched lazily, on the first verification that needs them, never in
// [NewVerifier]: in development the key set is served by the very process that
// builds the verifier, before it starts listening. Keys are cached in memory by
// kid. A token with an unknown kid triggers a refetch (picking up rotated keys),
// at most once per [Config.MinRefreshInterval]; concurrent callers share one
// in-flight fetch. A fetch is bounded by the HTTP client's timeout and each
// caller stops waiting when its context ends. While the key set endpoint is
// down or slow, tokens signed with cached keys keep verifying.
//
// Successful verifications are cached (keyed by a SHA-256 of the token, never
// beyond the token's exp, bounded in size).
//
// # No off switch
//
// There is deliberately no way to disable verification. Development mode runs
// a local [Issuer] (key persisted by [LoadOrCreateIssuer]) that serves its key
// set at [JWKSPath] below its URL and mints tokens with [Issuer.Mint]; the API
// verifies them through exactly the same code path as production tokens, JWKS
// over HTTP included.
package auth
