package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/auth"
)

// exampleID is the id of every documented example.
const exampleID = "550e8400-e29b-41d4-a716-446655440000"

// newUser returns a user id no other test uses.
func newUser(t *testing.T) string { return "user-" + uuid.NewString() }

// seedJob writes a job row exactly as a documented example shows it, owned
// by user (replacing any row with that id).
func seedJob(t *testing.T, user string, example []byte) {
	t.Helper()
	var ex struct {
		ID          string          `json:"id"`
		Type        string          `json:"type"`
		Status      string          `json:"status"`
		Result      json.RawMessage `json:"result"`
		Error       *string         `json:"error"`
		Attempts    int             `json:"attempts"`
		CreatedAt   *string         `json:"createdAt"`
		StartedAt   *string         `json:"startedAt"`
		CompletedAt *string         `json:"completedAt"`
		UpdatedAt   *string         `json:"updatedAt"`
	}
	if err := json.Unmarshal(example, &ex); err != nil {
		t.Fatal(err)
	}
	var result any
	if string(ex.Result) != "null" && len(ex.Result) > 0 {
		result = string(ex.Result)
	}
	_, err := env.db.Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1) DELETE FROM jobs WHERE id = $1`, ex.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.db.Exec(`INSERT INTO jobs (id, user_id, type, status, input, result, error, attempts,
			created_at, started_at, completed_at, updated_at)
		VALUES ($1, $2, $3, $4, '{}', CAST($5 AS jsonb), $6, $7, $8, $9, $10, $11)`,
		ex.ID, user, ex.Type, ex.Status, result, ex.Error, ex.Attempts,
		ex.CreatedAt, ex.StartedAt, ex.CompletedAt, ex.UpdatedAt)
	if err != nil {
		t.Fatalf("seed example row: %v", err)
	}
}

// TestDocumentedExamples: each documented response, reproduced from the
// exact row, comes back byte for byte (the documented key order, explicit
// nulls, three-digit UTC timestamps), compacted, as encoding/json writes it.
func TestDocumentedExamples(t *testing.T) {
	requireInProcess(t)
	s := loadSeed(t)
	for _, name := range []string{"Processing", "Completed", "Failed"} {
		t.Run(name, func(t *testing.T) {
			// A user per example: the three share one id, and a finished job
			// never changes in real life (the server may cache it).
			user := newUser(t)
			tok := token(t, user, false)
			seedJob(t, user, s.examples[name])
			resp, body := do(t, "GET", "/api/jobs/"+exampleID, bearer(tok), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			want := append(compact(t, s.examples[name]), '\n')
			if !bytes.Equal(body, want) {
				t.Errorf("body differs from the documented example\n got: %s\nwant: %s", body, want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	t.Run("typed client", func(t *testing.T) {
		user := newUser(t)
		tok := token(t, user, false)
		seedJob(t, user, s.examples["Failed"])
		res, err := client(t, tok).GetJobWithResponse(t.Context(), uuid.MustParse(exampleID), nil)
		if err != nil {
			t.Fatal(err)
		}
		j := res.JSON200
		if j == nil {
			t.Fatalf("status %d: %s", res.StatusCode(), res.Body)
		}
		if j.Status != "FAILED" || j.Attempts != 3 || j.Error == nil || *j.Error != "Bedrock API error: ThrottlingException - Rate exceeded" || j.Result != nil {
			t.Errorf("decoded job: %+v", j)
		}
		if want := time.Date(2026, 3, 4, 12, 0, 15, 0, time.UTC); j.CompletedAt == nil || !j.CompletedAt.Equal(want) {
			t.Errorf("completedAt %v, want %v", j.CompletedAt, want)
		}
	})
}

// TestDocumentedErrors: the server answers each documented error with the
// documented message.
func TestDocumentedErrors(t *testing.T) {
	s := loadSeed(t)
	tok := token(t, newUser(t), false)
	tests := []struct {
		name   string
		status int
		path   string
		header http.Header
	}{
		{"invalid UUID", 400, "/api/jobs/not-a-uuid", bearer(tok)},
		{"missing token", 401, "/api/jobs/" + exampleID, nil},
		{"unknown job", 404, "/api/jobs/" + uuid.NewString(), bearer(tok)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, "GET", tt.path, tt.header, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			want := s.errors[fmt.Sprint(tt.status)]
			if got := errorMessage(t, body); got != want {
				t.Errorf("message %q, want the documented %q", got, want)
			}
		})
	}
}

// TestMalformedIDs: anything but a canonical UUID is the documented 400,
// never a 404 or a 500, whatever the bytes.
func TestMalformedIDs(t *testing.T) {
	tok := token(t, newUser(t), false)
	ids := []struct{ name, raw string }{
		{"empty", ""},
		{"short", "550e8400-e29b-41d4-a716-44665544000"},
		{"long", "550e8400-e29b-41d4-a716-4466554400000"},
		{"non-hex", "550e8400-e29b-41d4-a716-44665544000g"},
		{"braces", "%7B550e8400-e29b-41d4-a716-446655440000%7D"},
		{"urn prefix", "urn:uuid:550e8400-e29b-41d4-a716-446655440000"},
		{"32 bare hex digits", "550e8400e29b41d4a716446655440000"},
		{"leading space", "%20550e8400-e29b-41d4-a716-446655440000"},
		{"trailing space", "550e8400-e29b-41d4-a716-446655440000%20"},
		{"trailing newline", "550e8400-e29b-41d4-a716-446655440000%0A"},
		{"NUL byte", "550e8400-e29b-41d4-a716-44665544000%00"},
		{"encoded braces", "%7b550e8400-e29b-41d4-a716-4466554400%7d"},
		{"encoded slash", "550e8400-e29b-41d4%2Fa716-446655440000"},
		{"invalid UTF-8", "%FF%FE8400-e29b-41d4-a716-446655440000"},
		{"SQL", "1'%20OR%20'1'='1"},
		{"SQL comment", "550e8400-e29b-41d4-a716-446655440000'--"},
		{"unicode digits", "%D9%A5%D9%A5%D9%A0e8400-e29b-41d4-a716-446655440000"},
		{"snowman", "%E2%98%83"},
		{"misplaced hyphens", "550e840-0e29b-41d4-a716-446655440000"},
		{"underscores", "550e8400_e29b_41d4_a716_446655440000"},
		{"extra group", "550e8400-e29b-41d4-a716-4466-5544000"},
		{"dot segment", ".."},
		{"plus signs", "550e8400+e29b+41d4+a716+446655440000"},
		{"very long", strings.Repeat("a", 5000)},
	}
	for _, tt := range ids {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawGet(t, "/api/jobs/"+tt.raw, "Bearer "+tok)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
			}
			if got := errorMessage(t, body); got != "Invalid UUID format" {
				t.Errorf("message %q", got)
			}
		})
	}
}

// TestUnparsableTarget: a request target that is not a URL at all is
// refused by Go's HTTP server before routing, with a plain-text 400. That is
// outside the error-shape promise (see the README), but it is a 400.
func TestUnparsableTarget(t *testing.T) {
	resp, body := rawGetNoShape(t, "/api/jobs/550e8400-e29b-41d4-a716-4466554400%zz", "Bearer x")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
	}
}

// TestValidIDForms: what is a valid id, decided and pinned: uppercase hex is
// the same UUID, percent-encoded hyphens decode to the canonical form, and
// the nil UUID is well formed (so 404, not 400).
func TestValidIDForms(t *testing.T) {
	requireInProcess(t)
	s := loadSeed(t)
	user := newUser(t)
	tok := token(t, user, false)
	seedJob(t, user, s.examples["Completed"])
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"lowercase", exampleID, 200},
		{"uppercase", strings.ToUpper(exampleID), 200},
		{"percent-encoded hyphens", strings.ReplaceAll(exampleID, "-", "%2D"), 200},
		{"nil UUID", "00000000-0000-0000-0000-000000000000", 404},
		{"max UUID", "ffffffff-ffff-ffff-ffff-ffffffffffff", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, "GET", "/api/jobs/"+tt.raw, bearer(tok), nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == 200 && !bytes.Contains(body, []byte(`"id":"`+exampleID+`"`)) {
				t.Errorf("the id is not written in canonical lowercase: %s", body)
			}
		})
	}
}

// TestNotFoundRules: another user's job and a job that does not exist are
// the same 404, byte for byte, so the API is no oracle for others' ids.
func TestNotFoundRules(t *testing.T) {
	requireInProcess(t)
	s := loadSeed(t)
	owner, other := newUser(t), newUser(t)
	seedJob(t, owner, s.examples["Completed"])

	resp, body := do(t, "GET", "/api/jobs/"+exampleID, bearer(token(t, owner, false)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("owner: status %d: %s", resp.StatusCode, body)
	}
	otherTok := token(t, other, false)
	respOther, bodyOther := do(t, "GET", "/api/jobs/"+exampleID, bearer(otherTok), nil)
	respNone, bodyNone := do(t, "GET", "/api/jobs/"+uuid.NewString(), bearer(otherTok), nil)
	if respOther.StatusCode != 404 || respNone.StatusCode != 404 {
		t.Fatalf("statuses %d and %d, want 404 and 404", respOther.StatusCode, respNone.StatusCode)
	}
	if !bytes.Equal(bodyOther, bodyNone) {
		t.Errorf("bodies differ:\nother user's job: %s\nmissing job:      %s", bodyOther, bodyNone)
	}
	for _, h := range []string{"Content-Type", "Content-Length"} {
		if respOther.Header.Get(h) != respNone.Header.Get(h) {
			t.Errorf("header %s differs: %q vs %q", h, respOther.Header.Get(h), respNone.Header.Get(h))
		}
	}
}

// TestAuthMatrix: every kind of bad credential is the documented 401 with a
// Bearer challenge, checked before the id (a malformed id is still a 401).
func TestAuthMatrix(t *testing.T) {
	now := time.Now()
	valid := func(over jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{
			"sub": "user-" + uuid.NewString(), "iss": "", "client_id": clientID, "token_use": "access",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		if env.issuer != nil {
			c["iss"] = env.issuer.URL()
		}
		for k, v := range over {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	otherPool := auth.NewIssuer(mustKey(t), "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_other")

	type tc struct {
		name          string
		authorization func(t *testing.T) string
		inProcessOnly bool
	}
	sign := func(c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string {
			tok, err := env.issuer.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}
	}
	lit := func(s string) func(*testing.T) string { return func(*testing.T) string { return s } }
	tests := []tc{
		{"no header", lit(""), false},
		{"other scheme", lit("Basic dXNlcjpwYXNz"), false},
		{"scheme only", lit("Bearer"), false},
		{"empty token", lit("Bearer "), false},
		{"garbage", lit("Bearer not.a.jwt"), false},
		{"alg none", func(t *testing.T) string { return "Bearer " + auth.UnsignedToken(valid(nil)) }, false},
		{"valid token of another pool", func(t *testing.T) string {
			c := valid(jwt.MapClaims{"iss": otherPool.URL()})
			tok, _ := otherPool.Sign(c)
			return "Bearer " + tok
		}, false},
		{"expired", sign(valid(jwt.MapClaims{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})), true},
		{"not yet valid", sign(valid(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), true},
		{"no exp", sign(valid(jwt.MapClaims{"exp": nil})), true},
		{"wrong issuer", sign(valid(jwt.MapClaims{"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_wrong"})), true},
		{"wrong client_id", sign(valid(jwt.MapClaims{"client_id": "someone-else"})), true},
		{"ID token when access is required", sign(valid(jwt.MapClaims{"token_use": "id", "client_id": nil, "aud": clientID})), true},
		{"no sub", sign(valid(jwt.MapClaims{"sub": nil})), true},
		{"HS256 signed with the public key", func(t *testing.T) string {
			tok, err := auth.HS256WithKey(valid(nil), env.issuer.PublicKeyPEM(), env.issuer.KeyID())
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}, true},
		{"unknown kid", func(t *testing.T) string {
			tok, err := env.issuer.SignWithHeader(valid(nil), map[string]any{"kid": "unknown-kid"})
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}, true},
		{"same kid, other key", func(t *testing.T) string {
			impostor := auth.NewIssuer(mustKey(t), env.issuer.URL())
			tok, err := impostor.SignWithHeader(valid(nil), map[string]any{"kid": env.issuer.KeyID()})
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}, true},
		{"tampered payload", func(t *testing.T) string {
			tok, _ := env.issuer.Sign(valid(nil))
			parts := strings.Split(tok, ".")
			forged, _ := json.Marshal(valid(jwt.MapClaims{"sub": "victim"}))
			parts[1] = b64url(forged)
			return "Bearer " + strings.Join(parts, ".")
		}, true},
	}
	paths := []string{"/api/jobs/" + exampleID, "/api/jobs/not-a-uuid", "/api/jobs"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.inProcessOnly {
				requireInProcess(t)
			}
			authz := tt.authorization(t)
			for _, p := range paths {
				resp, body := rawGet(t, p, authz)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("GET %s: status %d, want 401: %s", p, resp.StatusCode, body)
				}
				if got := errorMessage(t, body); got != "Missing or invalid Bearer token" {
					t.Errorf("message %q", got)
				}
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", ch)
				}
			}
		})
	}
	t.Run("valid token passes", func(t *testing.T) {
		resp, body := rawGet(t, "/api/jobs/"+uuid.NewString(), "Bearer "+token(t, newUser(t), false))
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404: %s", resp.StatusCode, body)
		}
	})
}
