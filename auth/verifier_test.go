package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestVerifyAccessTokens(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, func(c *Config) { c.ResultCacheSize = -1 })
	iss := s.iss()
	url := iss.URL()
	other := NewIssuer(testKey(t, 1), url)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signWith := func(m jwt.SigningMethod, key any, c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string {
			tok := jwt.NewWithClaims(m, c)
			tok.Header["kid"] = iss.KeyID()
			return must(tok.SignedString(key))
		}
	}
	sign := func(c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return must(iss.Sign(c)) }
	}
	withHeader := func(h map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string { return must(iss.SignWithHeader(accessClaims(url, nil), h)) }
	}
	claimsMod := func(f func(jwt.MapClaims)) func(t *testing.T) string { return sign(accessClaims(url, f)) }
	now := time.Now()

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		want    *Principal // nil: must fail
		wantErr error      // additionally checked with errors.Is when set
	}{
		{
			name:  "valid minted access token",
			token: func(t *testing.T) string { return must(iss.Mint("user-1", testClient, nil, time.Hour)) },
			want:  &Principal{Subject: "user-1", Username: "user-1"},
		},
		{
			name: "admin from groups",
			token: func(t *testing.T) string {
				return must(iss.Mint("u", testClient, []string{"users", "admin"}, time.Hour))
			},
			want: &Principal{Subject: "u", Username: "u", Groups: []string{"users", "admin"}, Admin: true},
		},
		{
			name:  "groups without admin",
			token: func(t *testing.T) string { return must(iss.Mint("u", testClient, []string{"users"}, time.Hour)) },
			want:  &Principal{Subject: "u", Username: "u", Groups: []string{"users"}},
		},
		{
			name:  "hand-built claims with second allowed client",
			token: claimsMod(func(c jwt.MapClaims) { c["client_id"] = "other-client" }),
			want:  &Principal{Subject: "user-1", Username: "alice"},
		},
		{
			name:  "expired within leeway",
			token: func(t *testing.T) string { return must(iss.Mint("u", testClient, nil, -10*time.Second)) },
			want:  &Principal{Subject: "u", Username: "u"},
		},
		{
			name:    "expired",
			token:   func(t *testing.T) string { return must(iss.Mint("u", testClient, nil, -time.Minute)) },
			wantErr: jwt.ErrTokenExpired,
		},
		{name: "exp missing", token: claimsMod(func(c jwt.MapClaims) { delete(c, "exp") }), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "exp not a number", token: claimsMod(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })},
		{name: "nbf in the future", token: claimsMod(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), wantErr: jwt.ErrTokenNotValidYet},
		{name: "nbf within leeway", token: claimsMod(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() }), want: &Principal{Subject: "user-1", Username: "alice"}},
		{name: "iat in the future", token: claimsMod(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), wantErr: jwt.ErrTokenUsedBeforeIssued},
		{name: "wrong issuer", token: claimsMod(func(c jwt.MapClaims) { c["iss"] = "https://cognito-idp.eu-west-1.amazonaws.com/other" }), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "issuer with trailing slash", token: claimsMod(func(c jwt.MapClaims) { c["iss"] = url + "/" }), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "issuer missing", token: claimsMod(func(c jwt.MapClaims) { delete(c, "iss") })},
		{name: "wrong client_id", token: claimsMod(func(c jwt.MapClaims) { c["client_id"] = "evil" })},
		{name: "client_id missing", token: claimsMod(func(c jwt.MapClaims) { delete(c, "client_id") })},
		{name: "client_id only in aud", token: claimsMod(func(c jwt.MapClaims) { delete(c, "client_id"); c["aud"] = testClient })},
		{name: "token_use missing", token: claimsMod(func(c jwt.MapClaims) { delete(c, "token_use") })},
		{name: "token_use id", token: sign(idClaims(url, func(c jwt.MapClaims) { c["client_id"] = testClient }))},
		{name: "sub missing", token: claimsMod(func(c jwt.MapClaims) { delete(c, "sub") })},
		{name: "sub empty", token: claimsMod(func(c jwt.MapClaims) { c["sub"] = "" })},
		{name: "groups not a list", token: claimsMod(func(c jwt.MapClaims) { c["cognito:groups"] = 7 })},
		{name: "alg none", token: func(t *testing.T) string { return UnsignedToken(accessClaims(url, nil)) }},
		{
			name: "alg none with kid",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodNone, accessClaims(url, nil))
				tok.Header["kid"] = iss.KeyID()
				return must(tok.SignedString(jwt.UnsafeAllowNoneSignatureType))
			},
		},
		{
			name: "HS256 with public key PEM as secret",
			token: func(t *testing.T) string {
				return must(HS256WithKey(accessClaims(url, nil), iss.PublicKeyPEM(), iss.KeyID()))
			},
		},
		{
			name: "HS256 with random secret",
			token: func(t *testing.T) string {
				return must(HS256WithKey(accessClaims(url, nil), []byte("secret"), iss.KeyID()))
			},
		},
		{name: "RS384 with the right key", token: signWith(jwt.SigningMethodRS384, iss.key, accessClaims(url, nil))},
		{name: "PS256 with the right key", token: signWith(jwt.SigningMethodPS256, iss.key, accessClaims(url, nil))},
		{name: "ES256", token: signWith(jwt.SigningMethodES256, ecKey, accessClaims(url, nil))},
		{name: "header alg RS384 over RS256 signature", token: withHeader(map[string]any{"alg": "RS384"})},
		{name: "header alg lowercase rs256", token: withHeader(map[string]any{"alg": "rs256"})},
		{name: "no kid", token: withHeader(map[string]any{"kid": nil})},
		{name: "empty kid", token: withHeader(map[string]any{"kid": ""})},
		{name: "numeric kid", token: withHeader(map[string]any{"kid": 5})},
		{
			name: "other key with the same kid",
			token: func(t *testing.T) string {
				return must(other.SignWithHeader(accessClaims(url, nil), map[string]any{"kid": iss.KeyID()}))
			},
		},
		{
			name: "tampered payload",
			token: func(t *testing.T) string {
				tok := must(iss.Sign(accessClaims(url, nil)))
				parts := strings.Split(tok, ".")
				raw, err := base64.RawURLEncoding.DecodeString(parts[1])
				if err != nil {
					t.Fatal(err)
				}
				var c map[string]any
				if err := json.Unmarshal(raw, &c); err != nil {
					t.Fatal(err)
				}
				c["sub"] = "victim"
				raw, _ = json.Marshal(c)
				parts[1] = base64.RawURLEncoding.EncodeToString(raw)
				return strings.Join(parts, ".")
			},
			wantErr: jwt.ErrTokenSignatureInvalid,
		},
		{
			name: "tampered signature",
			token: func(t *testing.T) string {
				tok := must(iss.Sign(accessClaims(url, nil)))
				i := strings.LastIndexByte(tok, '.') + 5
				b := []byte(tok)
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				return string(b)
			},
		},
		{name: "signature stripped", token: func(t *testing.T) string {
			tok := must(iss.Sign(accessClaims(url, nil)))
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}},
		{
			name:  "large but allowed token",
			token: claimsMod(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 5000) }),
			want:  &Principal{Subject: "user-1", Username: "alice"},
		},
		{name: "oversize token", token: claimsMod(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 7000) })},
		{name: "empty", token: func(*testing.T) string { return "" }},
		{name: "garbage", token: func(*testing.T) string { return "not-a-jwt" }},
		{name: "two segments", token: func(*testing.T) string { return "e30.e30" }},
		{name: "json header garbage", token: func(*testing.T) string { return "e30.e30.e30" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			got, err := v.Verify(context.Background(), tok)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Verify succeeded (%+v), want error", got)
				}
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("error %v does not wrap ErrUnauthorized", err)
				}
				t.Logf("rejected: %v", err)
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v does not wrap %v", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("got principal %+v with error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Principal{}, "ExpiresAt"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
			if got.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt is zero")
			}
		})
	}
	if n := s.hits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestVerifyIDTokens(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	iss := s.iss()
	url := iss.URL()
	idV := newTestVerifier(t, s, func(c *Config) { c.TokenUse = "id"; c.AdminGroup = "ops" })
	accessV := newTestVerifier(t, s, nil)
	sign := func(c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return must(iss.Sign(c)) }
	}
	tests := []struct {
		name  string
		v     *Verifier
		token func(t *testing.T) string
		want  *Principal
	}{
		{name: "valid id token", v: idV, token: sign(idClaims(url, nil)), want: &Principal{Subject: "user-2", Username: "bob", Groups: []string{"admin"}}},
		{
			name:  "aud list containing client, ops group",
			v:     idV,
			token: sign(idClaims(url, func(c jwt.MapClaims) { c["aud"] = []string{"x", testClient}; c["cognito:groups"] = []string{"ops"} })),
			want:  &Principal{Subject: "user-2", Username: "bob", Groups: []string{"ops"}, Admin: true},
		},
		{name: "wrong aud", v: idV, token: sign(idClaims(url, func(c jwt.MapClaims) { c["aud"] = "evil" }))},
		{name: "aud missing, client_id set", v: idV, token: sign(idClaims(url, func(c jwt.MapClaims) { delete(c, "aud"); c["client_id"] = testClient }))},
		{name: "access token to id verifier", v: idV, token: func(t *testing.T) string { return must(iss.Mint("u", testClient, nil, time.Hour)) }},
		{name: "id token to access verifier", v: accessV, token: sign(idClaims(url, nil))},
		{name: "id token sub missing", v: idV, token: sign(idClaims(url, func(c jwt.MapClaims) { delete(c, "sub") }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Verify(context.Background(), tt.token(t))
			if tt.want == nil {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("Verify = %+v, %v; want ErrUnauthorized", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Principal{}, "ExpiresAt")); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means success
	}{
		{name: "missing issuer", cfg: Config{ClientIDs: []string{"c"}}, wantErr: "Issuer"},
		{name: "relative issuer", cfg: Config{Issuer: "cognito", ClientIDs: []string{"c"}}, wantErr: "Issuer"},
		{name: "missing client IDs", cfg: Config{Issuer: "https://x"}, wantErr: "ClientIDs"},
		{name: "empty client ID", cfg: Config{Issuer: "https://x", ClientIDs: []string{""}}, wantErr: "ClientIDs"},
		{name: "bad token use", cfg: Config{Issuer: "https://x", ClientIDs: []string{"c"}, TokenUse: "refresh"}, wantErr: "TokenUse"},
		{name: "bad JWKS URL", cfg: Config{Issuer: "https://x", ClientIDs: []string{"c"}, JWKSURL: "/jwks"}, wantErr: "JWKSURL"},
		{name: "unreachable endpoint is fine (no I/O)", cfg: Config{Issuer: "https://127.0.0.1:1/pool", ClientIDs: []string{"c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewVerifier = %v, %v; want error mentioning %q", v, err, tt.wantErr)
			}
		})
	}

	v, err := NewVerifier(Config{Issuer: "https://cognito-idp.eu-west-1.amazonaws.com/pool/", ClientIDs: []string{"c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.keys.url, "https://cognito-idp.eu-west-1.amazonaws.com/pool"+JWKSPath; got != want {
		t.Errorf("JWKS URL = %q, want %q", got, want)
	}
	if v.cfg.TokenUse != "access" || v.leeway != 30*time.Second || v.cfg.AdminGroup != "admin" ||
		v.cfg.HTTPClient.Timeout != 5*time.Second || v.cfg.MinRefreshInterval != time.Minute || v.results == nil {
		t.Errorf("defaults not applied: %+v leeway=%v", v.cfg, v.leeway)
	}
	v, _ = NewVerifier(Config{Issuer: "https://x", ClientIDs: []string{"c"}, Leeway: -1, ResultCacheSize: -1})
	if v.leeway != 0 || v.results != nil {
		t.Errorf("negative Leeway/ResultCacheSize: leeway=%v results=%v", v.leeway, v.results)
	}
}

func TestLazyFetch(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, nil)
	if n := s.hits.Load(); n != 0 {
		t.Fatalf("NewVerifier fetched JWKS %d times, want 0", n)
	}
	if _, err := v.Verify(context.Background(), must(s.iss().Mint("u", testClient, nil, time.Hour))); err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestUnknownKidRefetchOncePerInterval(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, nil)
	clock := fakeKeyClock(v)
	ctx := context.Background()
	if _, err := v.Verify(ctx, must(s.iss().Mint("u", testClient, nil, time.Hour))); err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("warm-up fetched %d times, want 1", n)
	}
	clock.Advance(testInterval)

	stranger := NewIssuer(testKey(t, 1), s.iss().URL())
	unknown := must(stranger.Mint("u", testClient, nil, time.Hour))
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Go(func() { _, errs[i] = v.Verify(ctx, unknown) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("caller %d: err = %v, want ErrUnauthorized", i, err)
		}
	}
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("after 50 concurrent unknown-kid calls: %d fetches, want 2", n)
	}
	// Within the interval: no new fetch, and known kids still verify.
	if _, err := v.Verify(ctx, unknown); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	if _, err := v.Verify(ctx, must(s.iss().Mint("u2", testClient, nil, time.Hour))); err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("within interval: %d fetches, want 2", n)
	}
	clock.Advance(testInterval)
	if _, err := v.Verify(ctx, unknown); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	if n := s.hits.Load(); n != 3 {
		t.Fatalf("after interval: %d fetches, want 3", n)
	}
}

func TestKeyRotation(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, nil)
	clock := fakeKeyClock(v)
	ctx := context.Background()
	oldIss := s.iss()
	oldTok := must(oldIss.Mint("u", testClient, nil, time.Hour))
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatal(err)
	}
	newIss := NewIssuer(testKey(t, 1), oldIss.URL())
	s.issuer.Store(newIss)
	newTok := must(newIss.Mint("u", testClient, nil, time.Hour))

	// Right after the first fetch the refetch is rate-limited.
	if _, err := v.Verify(ctx, newTok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("within interval: err = %v, want ErrUnauthorized", err)
	}
	clock.Advance(testInterval)
	p, err := v.Verify(ctx, newTok)
	if err != nil {
		t.Fatalf("rotated key not picked up: %v", err)
	}
	if p.Subject != "u" {
		t.Errorf("Subject = %q", p.Subject)
	}
	// The retired key is gone from the set; a fresh token signed with it fails.
	if _, err := v.Verify(ctx, must(oldIss.Mint("u3", testClient, nil, time.Hour))); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("retired key: err = %v, want ErrUnauthorized", err)
	}
}

func TestJWKSEndpointFailures(t *testing.T) {
	ctx := context.Background()
	warm := func(t *testing.T, s *jwksServer, v *Verifier) {
		t.Helper()
		clock := fakeKeyClock(v)
		if _, err := v.Verify(ctx, must(s.iss().Mint("u", testClient, nil, time.Hour))); err != nil {
			t.Fatal(err)
		}
		clock.Advance(testInterval) // let the next unknown kid refetch
	}
	tests := []struct {
		name   string
		break_ func(s *jwksServer)
	}{
		{name: "server closed", break_: func(s *jwksServer) { s.srv.Close() }},
		{name: "server slow", break_: func(s *jwksServer) { s.slow.Store(true) }},
		{name: "server 500", break_: func(s *jwksServer) { s.fail.Store(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newJWKSServer(t, testKey(t, 0))
			v := newTestVerifier(t, s, func(c *Config) {
				c.HTTPClient = &http.Client{Timeout: 300 * time.Millisecond}
			})
			warm(t, s, v)
			tt.break_(s)

			stranger := NewIssuer(testKey(t, 1), s.iss().URL())
			start := time.Now()
			_, err := v.Verify(ctx, must(stranger.Mint("u", testClient, nil, time.Hour)))
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("unknown kid: err = %v, want ErrUnauthorized", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("unknown kid took %v, want bounded by the client timeout", d)
			}
			// Cached kid keeps working (fresh token: no result-cache hit).
			start = time.Now()
			if _, err := v.Verify(ctx, must(s.iss().Mint("u2", testClient, nil, time.Hour))); err != nil {
				t.Fatalf("cached kid: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("cached kid took %v", d)
			}
		})
	}
}

func TestColdStartSlowEndpoint(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	s.slow.Store(true)
	tok := must(s.iss().Mint("u", testClient, nil, time.Hour))

	t.Run("client timeout", func(t *testing.T) {
		v := newTestVerifier(t, s, func(c *Config) { c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond} })
		start := time.Now()
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("request context", func(t *testing.T) {
		v := newTestVerifier(t, s, func(c *Config) { c.HTTPClient = &http.Client{Timeout: 10 * time.Second} })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := v.Verify(ctx, tok)
		if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want ErrUnauthorized and DeadlineExceeded", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

func TestResultCache(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, func(c *Config) { c.Leeway = -1 })
	clock := time.Now()
	v.now = func() time.Time { return clock }
	tok := must(s.iss().Mint("u", testClient, []string{"g"}, time.Minute))
	ctx := context.Background()

	p1, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.results.len(); n != 1 {
		t.Fatalf("cache has %d entries, want 1", n)
	}
	p1.Groups[0] = "admin" // must not leak into the cache
	p2, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Groups[0] != "g" || p2.Admin {
		t.Fatalf("cached principal was mutated: %+v", p2)
	}
	clock = p2.ExpiresAt // exactly at exp: expired, not served from cache
	if _, err := v.Verify(ctx, tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("at exp: err = %v, want ErrTokenExpired", err)
	}
	if n := v.results.len(); n != 0 {
		t.Fatalf("expired entry still cached (%d entries)", n)
	}
	// Failures are never cached.
	clock = time.Now()
	bad := must(s.iss().Mint("u", "evil", nil, time.Minute))
	if _, err := v.Verify(ctx, bad); err == nil {
		t.Fatal("bad client accepted")
	}
	if n := v.results.len(); n != 0 {
		t.Fatalf("failure cached (%d entries)", n)
	}
}

func TestResultCacheBounded(t *testing.T) {
	c := newResultCache(10)
	now := time.Now()
	for i := range 100 {
		c.put(fmt.Sprintf("token-%d", i), &Principal{Subject: "s", ExpiresAt: now.Add(time.Hour)}, now)
		if n := c.len(); n > 10 {
			t.Fatalf("cache grew to %d entries", n)
		}
	}
	c.put("token-expired", &Principal{Subject: "s", ExpiresAt: now}, now)
	if _, ok := c.get("token-expired", now); ok {
		t.Fatal("already expired principal cached")
	}
}

// TestResultCacheComparesTheToken: two tokens whose keyed hashes are the
// same (forced here by putting one token's entry under the other's key)
// never answer for each other: the whole token is compared.
func TestResultCacheComparesTheToken(t *testing.T) {
	c := newResultCache(10)
	now := time.Now()
	c.put("token-alice", &Principal{Subject: "alice", ExpiresAt: now.Add(time.Hour)}, now)
	if p, ok := c.get("token-alice", now); !ok || p.Subject != "alice" {
		t.Fatalf("get(token-alice) = %+v, %v", p, ok)
	}
	// A colliding token: mallory's hash slot holds alice's entry.
	c.mu.Lock()
	c.entries[c.key("token-mallory")] = c.entries[c.key("token-alice")]
	c.mu.Unlock()
	if p, ok := c.get("token-mallory", now); ok {
		t.Fatalf("a token sharing the hash got %+v", p)
	}
	if p, ok := c.get("token-alice", now); !ok || p.Subject != "alice" {
		t.Fatalf("get(token-alice) after = %+v, %v", p, ok)
	}
}

// TestRecoversFromFailedFirstFetch: when the key set cannot be fetched at
// first (the endpoint was down when the API started), valid tokens verify
// again within seconds of the endpoint's return, not after a whole refetch
// interval.
func TestRecoversFromFailedFirstFetch(t *testing.T) {
	s := newJWKSServer(t, testKey(t, 0))
	v := newTestVerifier(t, s, func(c *Config) { c.MinRefreshInterval = time.Hour })
	clock := fakeKeyClock(v)
	s.fail.Store(true)
	tok := must(s.iss().Mint("u", testClient, nil, time.Hour))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("while the endpoint fails: %v", err)
	}
	s.fail.Store(false)
	// Still rate-limited right after the failure: the endpoint is spared.
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("right after the failed fetch: %v, want a rate-limited refusal", err)
	}
	if hits := s.hits.Load(); hits != 1 {
		t.Fatalf("%d fetches right after the failed one: the retry is not rate-limited", hits)
	}
	// retryAfterFailure (seconds) later, far within the hour-long interval,
	// the next request refetches and verifies.
	clock.Advance(retryAfterFailure)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("still refused %s after the endpoint came back: %v", retryAfterFailure, err)
	}
	if hits := s.hits.Load(); hits != 2 {
		t.Errorf("%d fetches, want 2: the failed one and the retry", hits)
	}
}

// BenchmarkVerifyCached is a verification the result cache answers: what
// every request with a token seen before pays.
func BenchmarkVerifyCached(b *testing.B) {
	s := newJWKSServer(b, testKey(b, 0))
	v := newTestVerifier(b, s, nil)
	tok := must(s.iss().Mint("u", testClient, []string{"g"}, time.Hour))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
