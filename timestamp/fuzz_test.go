package timestamp

import (
	"encoding/json"
	"testing"
)

// FuzzUnmarshal: whatever JSON a client sends, decoding never panics, and a
// decoded time marshals to the three-digit form and decodes back to the
// same millisecond.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`"2026-03-04T12:00:00.000Z"`, `"2026-03-04T14:00:00.5+02:00"`, `null`, `"x"`, `12`, `"9999-12-31T23:59:59.999999999-23:59"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ts Time
		if err := json.Unmarshal(b, &ts); err != nil || ts.IsZero() {
			return
		}
		out, err := json.Marshal(ts)
		if err != nil {
			return // a year outside 0..9999 cannot be written in the contract's form
		}
		var back Time
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%s -> %s does not decode: %v", b, out, err)
		}
		if !back.Equal(ts.Truncate(1e6)) && !back.Equal(ts.UTC().Truncate(1e6)) {
			t.Fatalf("%s -> %s -> %v, want %v", b, out, back.Time, ts.Time)
		}
	})
}
