package hub

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRecentChanges: a change is remembered for the window and then
// forgotten; a later change of the same job moves its time; the queue of
// times is compacted as entries are forgotten.
func TestRecentChanges(t *testing.T) {
	var r recentChanges
	a, b := uuid.New(), uuid.New()
	base := time.Now()
	r.note(a, base)
	if got := r.at(a); !got.IsZero() {
		t.Fatalf("remembered %v with no window", got)
	}
	r.setWindow(time.Minute)
	r.note(a, base)
	r.note(b, base.Add(time.Second))
	if got := r.at(a); !got.Equal(base) {
		t.Fatalf("at(a) = %v, want %v", got, base)
	}
	r.note(a, base.Add(2*time.Second))
	// b's and a's first entries are past the window at base+61.5s; a's
	// second is not.
	r.note(uuid.New(), base.Add(61500*time.Millisecond))
	if _, ok := r.last[b]; ok {
		t.Fatal("b is still remembered past the window")
	}
	if got := r.last[a]; !got.Equal(base.Add(2 * time.Second)) {
		t.Fatalf("a's time = %v, want its second change", got)
	}
	for i := range 1000 {
		r.note(uuid.New(), base.Add(time.Duration(200+i)*time.Second))
	}
	if live := len(r.order) - r.head; live > 61 {
		t.Fatalf("%d entries remembered, want at most the window's 61", live)
	}
	if len(r.order) > 200 {
		t.Fatalf("the queue holds %d entries: not compacted", len(r.order))
	}
}
