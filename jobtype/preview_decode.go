package jobtype

import (
	"unicode/utf8"

	"github.com/jobsd/jobsd/gen"
)

// decodePreviewFast reads an AI_PREVIEW input of the usual shape without
// encoding/json: an object with each of "prompt", "modelId" (strings) and
// "variables" (an object of strings) at most once, spelt exactly so, whose
// strings have no \u escape. jsonb gives it back that way, and at a backlog
// encoding/json's reflection (and the stack it grows) cost the worker more
// CPU than all the rest of the handler. For anything else, including every
// input that is wrong, it returns false and decodeInput decides, so that
// every result and every error text is decodeInput's.
func decodePreviewFast(b []byte) (in gen.PromptPreviewRequest, ok bool) {
	s := jsonScanner{b: b}
	if !s.next('{') {
		return in, false
	}
	if s.next('}') {
		return in, s.atEnd()
	}
	var seen [3]bool
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return in, false
		}
		switch key {
		case "prompt":
			if seen[0] {
				return in, false
			}
			seen[0] = true
			if in.Prompt, ok = s.str(); !ok {
				return in, false
			}
		case "modelId":
			if seen[1] {
				return in, false
			}
			seen[1] = true
			id, ok := s.str()
			if !ok {
				return in, false
			}
			in.ModelId = &id
		case "variables":
			if seen[2] {
				return in, false
			}
			seen[2] = true
			vars, ok := s.strings()
			if !ok {
				return in, false
			}
			in.Variables = &vars
		default:
			return in, false
		}
		if s.next(',') {
			continue
		}
		return in, s.next('}') && s.atEnd()
	}
}

// jsonScanner reads the few JSON tokens decodePreviewFast accepts; each
// method returns false for anything else.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c, after white space, if it comes next.
func (s *jsonScanner) next(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// atEnd reports whether only white space is left.
func (s *jsonScanner) atEnd() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// str reads a string of valid UTF-8 whose escapes are all single
// characters (\" \\ \/ \b \f \n \r \t).
func (s *jsonScanner) str() (string, bool) {
	if !s.next('"') {
		return "", false
	}
	start, escaped := s.i, false
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if !utf8.Valid(raw) {
				return "", false // encoding/json would replace the bad bytes
			}
			if !escaped {
				return string(raw), true
			}
			return unescape(raw)
		case c == '\\':
			escaped = true
			s.i++ // the escaped character cannot end the string
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// unescape resolves raw's single-character escapes.
func unescape(raw []byte) (string, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // \u, or not an escape at all
			return "", false
		}
	}
	return string(out), true
}

// strings reads an object of strings, each key at most once.
func (s *jsonScanner) strings() (map[string]string, bool) {
	if !s.next('{') {
		return nil, false
	}
	m := map[string]string{}
	if s.next('}') {
		return m, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		v, ok := s.str()
		if _, dup := m[k]; !ok || dup {
			return nil, false
		}
		m[k] = v
		if s.next(',') {
			continue
		}
		return m, s.next('}')
	}
}
