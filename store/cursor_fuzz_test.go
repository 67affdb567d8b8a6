package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzParseCursor: any text either fails cleanly with ErrBadCursor or is a
// cursor that encodes back to an equal cursor.
func FuzzParseCursor(f *testing.F) {
	f.Add(Cursor{CreatedAt: time.UnixMicro(1772625600000000).UTC(), ID: uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")}.String())
	f.Add("")
	f.Add("not-a-cursor")
	f.Add("MTIzLjU1MGU4NDAw")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || !again.CreatedAt.Equal(c.CreatedAt) || again.ID != c.ID {
			t.Fatalf("round trip of %q: %+v -> %+v (%v)", s, c, again, err)
		}
	})
}
