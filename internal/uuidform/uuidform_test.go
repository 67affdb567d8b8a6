package uuidform

import (
	"regexp"
	"testing"
)

var patternRE = regexp.MustCompile(Pattern)

func TestIsCanonical(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"lower case", "550e8400-e29b-41d4-a716-446655440000", true},
		{"upper case", "550E8400-E29B-41D4-A716-446655440000", true},
		{"UUIDv7", "01890a5d-ac96-774b-bcce-b302099a8057", true},
		{"braces", "{550e8400-e29b-41d4-a716-446655440000}", false},
		{"urn", "urn:uuid:550e8400-e29b-41d4-a716-446655440000", false},
		{"32 bare digits", "550e8400e29b41d4a716446655440000", false},
		{"trailing newline", "550e8400-e29b-41d4-a716-44665544000\n", false},
		{"hyphen misplaced", "550e840-0e29b-41d4-a716-446655440000", false},
		{"not hex", "550e8400-e29b-41d4-a716-44665544000g", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsCanonical(tt.in); got != tt.want {
				t.Errorf("IsCanonical(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if (Check(tt.in) == nil) != tt.want {
				t.Errorf("Check(%q) = %v", tt.in, Check(tt.in))
			}
		})
	}
}

// FuzzIsCanonical: the hand-written check agrees with Pattern, the
// contract's regular expression, on every input.
func FuzzIsCanonical(f *testing.F) {
	for _, s := range []string{"550e8400-e29b-41d4-a716-446655440000", "550E8400-E29B-41D4-A716-446655440000",
		"{550e8400-e29b-41d4-a716-446655440000}", "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
		"550e8400e29b41d4a716446655440000", "550e8400-e29b-41d4-a716-44665544000\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsCanonical(s), patternRE.MatchString(s); got != want {
			t.Fatalf("IsCanonical(%q) = %v, want %v", s, got, want)
		}
	})
}
