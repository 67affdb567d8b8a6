package impl

import (
	"regexp"
	"testing"
)

var canonicalRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FuzzIsCanonicalUUID: the hand-written check agrees with the contract's
// regular expression on every input.
func FuzzIsCanonicalUUID(f *testing.F) {
	for _, s := range []string{"550e8400-e29b-41d4-a716-446655440000", "550E8400-E29B-41D4-A716-446655440000",
		"{550e8400-e29b-41d4-a716-446655440000}", "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
		"550e8400e29b41d4a716446655440000", "550e8400-e29b-41d4-a716-44665544000\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsCanonicalUUID(s), canonicalRE.MatchString(s); got != want {
			t.Fatalf("IsCanonicalUUID(%q) = %v, want %v", s, got, want)
		}
	})
}
