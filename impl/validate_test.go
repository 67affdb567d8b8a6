package impl

import "testing"

// TestBareValid: kin-openapi is skipped only for operations where a request
// without query and header parameters cannot fail validation but by its path.
func TestBareValid(t *testing.T) {
	routes, err := specRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for route, want := range map[string]bool{
		"GET /api/jobs/:id":               true,  // the poll: id, optional waitSeconds and If-None-Match
		"GET /api/jobs/:id/events":        true,  // optional Last-Event-ID
		"POST /api/jobs":                  false, // a body
		"POST /api/admin/prompts/preview": false,
		"POST /api/jobs/:id/cancel":       true, // no body, id only
	} {
		r, ok := routes[route]
		if !ok {
			t.Errorf("%s: not in the spec", route)
			continue
		}
		if r.bareValid != want {
			t.Errorf("%s: bareValid %v, want %v", route, r.bareValid, want)
		}
	}
	if h := routes["GET /api/jobs/:id"].headers; len(h) != 1 || h[0] != "If-None-Match" {
		t.Errorf("poll's header parameters: %v, want [If-None-Match]", h)
	}
}
