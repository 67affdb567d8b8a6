package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzBearerToken: any Authorization header either yields a non-empty token
// without spaces or is refused; never a panic.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer x", "Bearer", "Bearer ", "Basic dXNlcg==", "Bearer  a b", "Bearer a=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := BearerToken(h)
		if ok && (tok == "" || strings.ContainsAny(tok, " \t\r\n")) {
			t.Fatalf("BearerToken(%q) = %q, true", h, tok)
		}
	})
}

// FuzzVerify: any token text is refused with ErrUnauthorized, quickly, and
// never panics. The verifier's JWKS endpoint is unreachable, as for a token
// whose key id is unknown.
func FuzzVerify(f *testing.F) {
	v, err := NewVerifier(Config{Issuer: "http://127.0.0.1:1/pool", ClientIDs: []string{"c"}, MinRefreshInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.c2ln", "", "...", strings.Repeat("a", 9000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := v.Verify(ctx, tok)
		if err == nil || p != nil || !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify(%q) = %v, %v", tok, p, err)
		}
	})
}
