package impl

import "testing"

// TestNewestSeen: the newest version an If-None-Match or Last-Event-ID
// names; anything that is not an ETag of ours names none.
func TestNewestSeen(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   int64
	}{
		{``, 0},
		{`*`, 0},
		{`"v7"`, 7},
		{`W/"v7"`, 7},
		{`"v3", "v12" ,W/"v5"`, 12},
		{`v7`, 0},
		{`"v"`, 0},
		{`"x7"`, 0},
		{`"v-1"`, 0},
		{`"v99999999999999999999"`, 0},
	} {
		if got := newestSeen(tc.header); got != tc.want {
			t.Errorf("newestSeen(%q) = %d, want %d", tc.header, got, tc.want)
		}
	}
}
