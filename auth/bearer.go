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
// It runs on every request over a token of about a kilobyte, hence the
// table, read eight bytes per branch.
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	ok := uint8(1)
	i := 0
	for ; i+8 <= len(body); i += 8 {
		b := body[i : i+8]
		ok &= token68Char[b[0]] & token68Char[b[1]] & token68Char[b[2]] & token68Char[b[3]] &
			token68Char[b[4]] & token68Char[b[5]] & token68Char[b[6]] & token68Char[b[7]]
		if ok == 0 {
			return false
		}
	}
	for ; i < len(body); i++ {
		ok &= token68Char[body[i]]
	}
	return ok == 1
}

// token68Char is 1 for the bytes allowed before the padding, else 0.
var token68Char = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0 {
			t[c] = 1
		}
	}
	return t
}()
