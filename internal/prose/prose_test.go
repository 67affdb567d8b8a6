package prose

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSentences(t *testing.T) {
	tests := []struct {
		name string
		text string
		max  int
		want []string
	}{
		{name: "punctuation", text: "Prices fell. Did they? Yes!  Again.",
			want: []string{"Prices fell.", "Did they?", "Yes!", "Again."}},
		{name: "closing quote and bracket stay", text: `He said "stop." Then (quietly.) he left`,
			want: []string{`He said "stop."`, "Then (quietly.)", "he left"}},
		{name: "no space after the dot: no split", text: "Version 1.5 is out.",
			want: []string{"Version 1.5 is out."}},
		{name: "blank line", text: "Title line\n\nBody text here",
			want: []string{"Title line", "Body text here"}},
		{name: "whitespace normalised", text: "A  sentence\nwrapped\tacross lines.",
			want: []string{"A sentence wrapped across lines."}},
		{name: "bullets", text: "Risks:\n- drought\n* pests\n• prices",
			want: []string{"Risks:", "drought", "pests", "prices"}},
		{name: "numbered items", text: "Steps:\n1. plant\n2) water",
			want: []string{"Steps:", "plant", "water"}},
		{name: "headings", text: "Intro text\n# Scope\n## Terms",
			want: []string{"Intro text", "Scope", "Terms"}},
		{name: "table rows", text: "Table:\n| a | b |\n| 1 | 2 |",
			want: []string{"Table:", "a | b |", "1 | 2 |"}},
		{name: "empty", text: " \n\n ", want: nil},
		{name: "at most max", text: "One. Two. Three. Four.", max: 2,
			want: []string{"One.", "Two."}},
		{name: "max 0 is all", text: "One. Two. Three.", max: 0,
			want: []string{"One.", "Two.", "Three."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Sentences(tt.text, tt.max)); diff != "" {
				t.Errorf("Sentences(%q) (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}

func TestWords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "lower case, punctuation dropped", in: "Maize prices FELL 30%, again.", want: []string{"maize", "prices", "fell", "30", "again"}},
		{name: "apostrophe separates", in: "the farmer's silo", want: []string{"the", "farmer", "s", "silo"}},
		{name: "letters of any script", in: "Café naïve Ωmega", want: []string{"café", "naïve", "ωmega"}},
		{name: "hyphen separates", in: "long-term", want: []string{"long", "term"}},
		{name: "none", in: " -- ", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Words(tt.in)); diff != "" {
				t.Errorf("Words(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestIsStopWord(t *testing.T) {
	for _, w := range []string{"the", "and", "which", "within", "across", "must", "should", "etc"} {
		if !IsStopWord(w) {
			t.Errorf("IsStopWord(%q) = false", w)
		}
	}
	for _, w := range []string{"maize", "risk", "supplier", "The", ""} {
		if IsStopWord(w) {
			t.Errorf("IsStopWord(%q) = true", w)
		}
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "short enough", in: "hello", n: 5, want: "hello"},
		{name: "cut at a word", in: "the quick brown fox", n: 12, want: "the quick…"},
		{name: "no space in the second half: cut inside", in: "a verylongword", n: 8, want: "a veryl…"},
		{name: "runes, not bytes", in: "ééééé", n: 3, want: "éé…"},
		{name: "trailing space trimmed", in: "abcd efgh ijkl", n: 6, want: "abcd…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.in, tt.n)
			if got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if n := len([]rune(got)); n > tt.n {
				t.Errorf("Truncate(%q, %d) has %d runes", tt.in, tt.n, n)
			}
		})
	}
}

func TestCutBytes(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // é is two bytes: not split
		{"héllo", 3, "hé"},
		{"€", 2, ""},
	}
	for _, tt := range tests {
		if got := CutBytes(tt.in, tt.n); got != tt.want {
			t.Errorf("CutBytes(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
	if got := CutBytes(strings.Repeat("x", 5), 0); got != "" {
		t.Errorf("CutBytes(_, 0) = %q", got)
	}
}
