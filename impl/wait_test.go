package impl

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestWaitSeconds(t *testing.T) {
	tests := []struct {
		name, query string
		want        int
	}{
		{"absent", "", 0},
		{"a long poll", "?waitSeconds=5", 5},
		{"zero", "?waitSeconds=0", 0},
		{"not a number", "?waitSeconds=soon", 0},
		{"negative: left to the validator", "?waitSeconds=-3", -3},
		{"over the maximum: left to the validator", "?waitSeconds=31", 31},
	}
	e := echo.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/jobs/x"+tt.query, nil), httptest.NewRecorder())
			if got := waitSeconds(c); got != tt.want {
				t.Errorf("waitSeconds(%q) = %d, want %d", tt.query, got, tt.want)
			}
		})
	}
}

// TestWaitSecondsParsedOnce: the value read first is the one every later
// reader of the same request gets, from the context.
func TestWaitSecondsParsedOnce(t *testing.T) {
	c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/api/jobs/x?waitSeconds=7", nil), httptest.NewRecorder())
	if got := waitSeconds(c); got != 7 {
		t.Fatalf("first read = %d, want 7", got)
	}
	if got, ok := c.Get(waitSecondsKey).(int); !ok || got != 7 {
		t.Fatalf("context holds %v, want 7", c.Get(waitSecondsKey))
	}
	c.Set(waitSecondsKey, 9) // a second parse would find 7 again
	if got := waitSeconds(c); got != 9 {
		t.Errorf("second read = %d, want the stored 9 (no second parse)", got)
	}
}
