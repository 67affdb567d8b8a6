package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestLoadOrCreateIssuer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "issuer.pem")
	i1, err := LoadOrCreateIssuer(path, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("key file mode %v, want 0600", m)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if m := di.Mode().Perm(); m != 0o700 {
		t.Errorf("key dir mode %v, want 0700", m)
	}
	data, _ := os.ReadFile(path)
	if b, _ := pem.Decode(data); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("key file is not a PKCS#8 PEM")
	}
	i2, err := LoadOrCreateIssuer(path, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if i1.KeyID() == "" || i1.KeyID() != i2.KeyID() {
		t.Fatalf("kid changed across loads: %q vs %q", i1.KeyID(), i2.KeyID())
	}
	if string(i1.JWKS()) != string(i2.JWKS()) {
		t.Fatal("JWKS changed across loads")
	}

	// Bad files are errors, not silently replaced.
	tests := []struct {
		name string
		data []byte
	}{
		{name: "not PEM", data: []byte("hello")},
		{name: "wrong block", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})},
		{name: "EC key", data: func() []byte {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateIssuer(p, "http://x"); err == nil {
				t.Fatal("LoadOrCreateIssuer accepted a bad key file")
			}
		})
	}
}

// TestIssuerEndToEnd mirrors dev mode: an issuer loaded from disk serves its
// JWKS below its URL and the verifier checks its tokens over HTTP.
func TestIssuerEndToEnd(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss, err := LoadOrCreateIssuer(filepath.Join(t.TempDir(), "k.pem"), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(JWKSPath, iss.JWKSHandler())

	resp, err := http.Get(srv.URL + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != iss.KeyID() || set.Keys[0]["kty"] != "RSA" ||
		set.Keys[0]["use"] != "sig" || set.Keys[0]["alg"] != "RS256" || set.Keys[0]["e"] != "AQAB" || set.Keys[0]["n"] == "" {
		t.Fatalf("unexpected JWKS: %+v", set)
	}

	v, err := NewVerifier(Config{Issuer: iss.URL(), ClientIDs: []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint("owner-1", "dev", []string{"admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"iss", "sub", "client_id", "token_use", "username", "scope", "iat", "exp", "jti", "auth_time", "cognito:groups"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("minted token lacks %q", c)
		}
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "owner-1" || !p.Admin {
		t.Fatalf("principal = %+v", p)
	}
	noGroups, _ := iss.Mint("owner-2", "dev", nil, time.Hour)
	claims = jwt.MapClaims{}
	_, _, _ = jwt.NewParser().ParseUnverified(noGroups, claims)
	if _, ok := claims["cognito:groups"]; ok {
		t.Error("cognito:groups present although no groups were given")
	}
}

func TestParseJWKS(t *testing.T) {
	good := NewIssuer(testKey(t, 0), "http://x")
	var set jwkSet
	if err := json.Unmarshal(good.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	k := set.Keys[0]
	mod := func(f func(*jwk)) jwk { c := k; f(&c); return c }
	tests := []struct {
		name     string
		keys     []jwk
		wantKids []string // nil: error
	}{
		{name: "good", keys: []jwk{k}, wantKids: []string{k.Kid}},
		{name: "use and alg omitted", keys: []jwk{mod(func(j *jwk) { j.Use, j.Alg, j.Kid = "", "", "bare" })}, wantKids: []string{"bare"}},
		{
			name: "mixed: only usable RSA sig keys kept",
			keys: []jwk{
				k,
				mod(func(j *jwk) { j.Kid, j.Use = "enc", "enc" }),
				mod(func(j *jwk) { j.Kid, j.Kty = "ec", "EC" }),
				mod(func(j *jwk) { j.Kid, j.Alg = "rs512", "RS512" }),
				mod(func(j *jwk) { j.Kid = "" }),
				mod(func(j *jwk) { j.Kid, j.N = "badn", "!!" }),
				mod(func(j *jwk) { j.Kid, j.N = "small", "AQAB" }),
				mod(func(j *jwk) { j.Kid, j.E = "bade", "Ag" }),
			},
			wantKids: []string{k.Kid},
		},
		{name: "no usable key", keys: []jwk{mod(func(j *jwk) { j.Kty = "oct" })}},
		{name: "empty", keys: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(jwkSet{Keys: tt.keys})
			got, err := parseJWKS(body)
			if tt.wantKids == nil {
				if err == nil {
					t.Fatalf("parseJWKS = %v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.wantKids) {
				t.Fatalf("got %d keys, want %v", len(got), tt.wantKids)
			}
			for _, kid := range tt.wantKids {
				if got[kid] == nil || got[kid].N.Cmp(testKey(t, 0).N) != 0 {
					t.Errorf("kid %q missing or wrong", kid)
				}
			}
		})
	}
	if _, err := parseJWKS([]byte("{")); err == nil {
		t.Error("malformed JSON accepted")
	}
}

func TestJWKSBodyLimit(t *testing.T) {
	iss := NewIssuer(testKey(t, 0), "http://x")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body := iss.JWKS()
		w.Write(body[:len(body)-1])
		w.Write([]byte(`,"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`))
	}))
	t.Cleanup(srv.Close)
	c := newKeyCache(srv.URL, srv.Client(), time.Minute)
	if _, err := c.download(context.Background()); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("download = %v, want size error", err)
	}
}
