// Package uuidform holds the one check of the UUID form jobsd's contract
// accepts and writes: 36 characters, 8-4-4-4-12 hexadecimal digits, either
// case. The server's id check, its kin-openapi "uuid" format and the
// conformance suite's response validation all use it.
//
// google/uuid's Parse is too lenient for this (it accepts braces,
// "urn:uuid:" and 32 bare digits), and kin-openapi's RFC 4122 pattern too
// strict (it rejects UUIDv7, which jobsd's own ids are).
package uuidform

import "errors"

// Pattern is the canonical form as a regular expression; [IsCanonical]
// agrees with it on every input (its fuzz target checks that).
const Pattern = `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`

// IsCanonical reports whether s is 8-4-4-4-12 hexadecimal digits.
func IsCanonical(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ErrNotCanonical is what [Check] returns for any other form.
var ErrNotCanonical = errors.New("is not a UUID in canonical form")

// Check returns ErrNotCanonical unless s is canonical; it has the shape of
// kin-openapi's callback format validators:
// openapi3.DefineStringFormatValidator("uuid", openapi3.NewCallbackValidator(uuidform.Check)).
func Check(s string) error {
	if !IsCanonical(s) {
		return ErrNotCanonical
	}
	return nil
}
