package auth

import "strings"

// BearerToken extracts the token from an Authorization header value of the
// form "Bearer <token>" (RFC 6750 section 2.1). The scheme is matched
// case-insensitively and may be followed by one or more spaces (the RFC's
// 1*SP); the token must be non-empty token68 syntax (letters, digits,
// "-._~+/", optionally followed by "=" padding) with nothing after it.
// Anything else, including other schemes, tabs, and trailing junk, yields
// ("", false).
func BearerToken(authorizationHeader string) (string, bool) {
	const scheme = "bearer"
	h := authorizationHeader
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) || h[len(scheme)] != ' ' {
		return "", false
	}
	tok := strings.TrimLeft(h[len(scheme):], " ")
	if !isToken68(tok) {
		return "", false
	}
	return tok, true
}

// isToken68 reports whether s matches
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// It runs on every request over a token of about a kilobyte, hence the table.
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !token68Char[body[i]] {
			return false
		}
	}
	return true
}

// token68Char marks the bytes allowed before the padding.
var token68Char = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()
