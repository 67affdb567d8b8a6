package auth

import "testing"

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
