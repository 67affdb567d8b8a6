package auth

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   string
		ok     bool
	}{
		{name: "valid", header: "Bearer abc.def.ghi", want: "abc.def.ghi", ok: true},
		{name: "lowercase scheme", header: "bearer tok", want: "tok", ok: true},
		{name: "uppercase scheme", header: "BEARER tok", want: "tok", ok: true},
		{name: "multiple spaces (RFC 6750 1*SP)", header: "Bearer  tok", want: "tok", ok: true},
		{name: "token68 chars and padding", header: "Bearer aZ09-._~+/==", want: "aZ09-._~+/==", ok: true},
		{name: "empty", header: ""},
		{name: "no scheme", header: "abc.def.ghi"},
		{name: "basic", header: "Basic dXNlcjpwYXNz"},
		{name: "scheme only", header: "Bearer"},
		{name: "scheme and space", header: "Bearer "},
		{name: "scheme and spaces", header: "Bearer   "},
		{name: "no space", header: "Bearertok"},
		{name: "tab separator", header: "Bearer\ttok"},
		{name: "leading space", header: " Bearer tok"},
		{name: "trailing space", header: "Bearer tok "},
		{name: "trailing junk", header: "Bearer tok extra"},
		{name: "comma", header: "Bearer tok,other"},
		{name: "quote", header: `Bearer "tok"`},
		{name: "only padding", header: "Bearer =="},
		{name: "padding in middle", header: "Bearer ab=cd"},
		{name: "non-ascii", header: "Bearer tök"},
		{name: "newline", header: "Bearer tok\n"},
		{name: "prefix of other scheme", header: "Bearerx tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := BearerToken(tt.header)
			if got != tt.want || ok != tt.ok {
				t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestIsToken68EveryByte: the table read eight bytes at a time agrees with
// the grammar for every byte at every position of a long token (the
// eight-byte steps and the tail).
func TestIsToken68EveryByte(t *testing.T) {
	allowed := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
	}
	base := []byte(strings.Repeat("aZ09-._~+/", 2)[:19])
	for pos := range base {
		for c := 0; c < 256; c++ {
			tok := append([]byte(nil), base...)
			tok[pos] = byte(c)
			want := allowed(byte(c)) || c == '=' && pos == len(base)-1
			if got := isToken68(string(tok)); got != want {
				t.Errorf("isToken68(%q) = %v, want %v", tok, got, want)
			}
		}
	}
}

func BenchmarkIsToken68(b *testing.B) {
	tok := strings.Repeat("eyJhbGciOiJSUzI1NiIsImtpZCI6Il9HZUZXcFl4YnlzX1VGVUwi.", 20)
	for b.Loop() {
		if !isToken68(tok) {
			b.Fatal("refused")
		}
	}
}
