package impl

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// TestSimpleRoutes: the plain checks are derived for the operations whose
// parameters the spec keeps simple, and not for those with a body.
func TestSimpleRoutes(t *testing.T) {
	routes, err := specRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for route, want := range map[string]bool{
		"GET /api/jobs/:id":               true, // id, waitSeconds 0..30, If-None-Match ≤ 1000
		"GET /api/jobs/:id/events":        true, // Last-Event-ID ≤ 200
		"POST /api/jobs":                  false,
		"POST /api/admin/prompts/preview": false,
	} {
		r, ok := routes[route]
		if !ok {
			t.Errorf("%s: not in the spec", route)
			continue
		}
		if r.simple != want {
			t.Errorf("%s: simple %v, want %v", route, r.simple, want)
		}
	}
}

// TestPlainlyValidAgreesWithKinOpenAPI: whatever the plain checks accept,
// kin-openapi accepts; and the ordinary polls are accepted plainly (else the
// shortcut would never be taken).
func TestPlainlyValidAgreesWithKinOpenAPI(t *testing.T) {
	routes, err := specRoutes()
	if err != nil {
		t.Fatal(err)
	}
	route := routes["GET /api/jobs/:id"]
	const id = "550e8400-e29b-41d4-a716-446655440000"
	tests := []struct {
		query, inm string
		plain      bool // expected from plainlyValid
	}{
		{"", "", true},
		{"waitSeconds=0", "", true},
		{"waitSeconds=30", `"v3"`, true},
		{"waitSeconds=05", "", true},
		{"", `"v3", W/"v4"`, true},
		{"", "*", true},
		{"", strings.Repeat("a", 1000), true},
		{"", strings.Repeat("a", 1001), false},
		{"waitSeconds=31", "", false},
		{"waitSeconds=-1", "", false},
		{"waitSeconds=x", "", false},
		{"waitSeconds=", "", false},
		{"waitSeconds=1&waitSeconds=2", "", false},
		{"waitSeconds=1e1", "", false},
		{"other=1", "", false},
		{"%zz", "", false},
		{"", "ünï", false},
		{"", "tab\there", false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/api/jobs/"+id+"?"+tt.query, nil)
		if tt.query == "" {
			req.URL.RawQuery = ""
		}
		if tt.inm != "" {
			req.Header.Set("If-None-Match", tt.inm)
		}
		plain := route.plainlyValid(req)
		if plain != tt.plain {
			t.Errorf("?%s If-None-Match %q: plainlyValid %v, want %v", tt.query, tt.inm, plain, tt.plain)
		}
		err := openapi3filter.ValidateRequest(req.Context(), &openapi3filter.RequestValidationInput{
			Request: req, PathParams: map[string]string{"id": id}, Route: route.Route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		})
		if plain && err != nil {
			t.Errorf("?%s If-None-Match %q: plainly valid, but kin-openapi says %v", tt.query, tt.inm, err)
		}
	}
}
