package impl

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
)

// specRoute is one operation of openapi.yaml as validation needs it.
//
// kin-openapi's walk over a request was a tenth of a status poll's CPU, so
// where the spec allows, a request is first checked by a few comparisons
// derived from the spec at startup (plainlyValid). That check only ever
// says "valid" for requests kin-openapi accepts; anything it is not sure
// of goes to kin-openapi, which also words every 400.
type specRoute struct {
	*routers.Route
	// simple: the operation takes no body, its path parameters are the job
	// id (which checkJobID checks to the spec's format), and each query and
	// header parameter is a bounded integer or a length-bounded string.
	simple  bool
	query   map[string]simpleParam
	headers []simpleParam
}

// A simpleParam is a query or header parameter whose schema has no keyword
// but its type (integer or string), bounds and lengths.
type simpleParam struct {
	name     string // the query name, or the header's canonical key
	required bool
	integer  bool
	min, max float64 // integer bounds; ±Inf when open
	minLen   int     // string length bounds, in characters
	maxLen   int     // -1 when open
}

// simpleKeywords are the schema keywords a simpleParam understands; a schema
// with any other keyword is left to kin-openapi.
var simpleKeywords = map[string]bool{"type": true, "minimum": true, "maximum": true, "minLength": true,
	"maxLength": true, "description": true, "example": true, "title": true}

// simpleParams derives the plain checks of an operation (see specRoute).
func simpleParams(item *openapi3.PathItem, op *openapi3.Operation) (bool, map[string]simpleParam, []simpleParam) {
	ok := op.RequestBody == nil
	query := map[string]simpleParam{}
	var headers []simpleParam
	for _, ref := range append(item.Parameters, op.Parameters...) {
		p := ref.Value
		if p.In == openapi3.ParameterInPath {
			s := p.Schema
			ok = ok && p.Name == "id" && s != nil && s.Value != nil && s.Value.Format == "uuid"
			continue
		}
		sp, simple := simpleParamOf(p)
		switch {
		case !simple:
			ok = false
		case p.In == openapi3.ParameterInQuery:
			query[p.Name] = sp
		case p.In == openapi3.ParameterInHeader:
			sp.name = http.CanonicalHeaderKey(p.Name)
			headers = append(headers, sp)
		default:
			ok = false
		}
	}
	return ok, query, headers
}

func simpleParamOf(p *openapi3.Parameter) (simpleParam, bool) {
	if p.Content != nil || p.Schema == nil || p.Schema.Value == nil || p.Style != "" || p.Explode != nil ||
		p.AllowEmptyValue || p.Deprecated {
		return simpleParam{}, false
	}
	s := p.Schema.Value
	raw, err := json.Marshal(s)
	if err != nil {
		return simpleParam{}, false
	}
	var keywords map[string]json.RawMessage
	if json.Unmarshal(raw, &keywords) != nil {
		return simpleParam{}, false
	}
	for k := range keywords {
		if !simpleKeywords[k] {
			return simpleParam{}, false
		}
	}
	sp := simpleParam{name: p.Name, required: p.Required, min: math.Inf(-1), max: math.Inf(1), minLen: int(s.MinLength), maxLen: -1}
	if s.Min != nil {
		sp.min = *s.Min
	}
	if s.Max != nil {
		sp.max = *s.Max
	}
	if s.MaxLength != nil {
		sp.maxLen = int(*s.MaxLength)
	}
	switch {
	case s.Type.Is("integer"):
		sp.integer = true
	case s.Type.Is("string"):
	default:
		return simpleParam{}, false
	}
	return sp, true
}

// plainlyValid reports whether req is valid by the route's plain checks:
// true only when kin-openapi would accept it too.
func (r specRoute) plainlyValid(req *http.Request) bool {
	if !r.simple {
		return false
	}
	var q url.Values
	if req.URL.RawQuery != "" {
		var err error
		if q, err = url.ParseQuery(req.URL.RawQuery); err != nil {
			return false
		}
	}
	for name, values := range q {
		p, known := r.query[name]
		if !known || len(values) != 1 || !p.accepts(values[0]) {
			return false
		}
	}
	for name, p := range r.query {
		if p.required && !q.Has(name) {
			return false
		}
	}
	for _, p := range r.headers {
		values, present := req.Header[p.name]
		if !present {
			if p.required {
				return false
			}
			continue
		}
		if len(values) != 1 || !p.accepts(values[0]) {
			return false
		}
	}
	return true
}

// accepts reports whether v is plainly valid: printable ASCII (so length in
// bytes is length in characters), and for an integer nothing but digits.
func (p simpleParam) accepts(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || p.integer && (c < '0' || c > '9') {
			return false
		}
	}
	if p.integer {
		if len(v) > 9 {
			return false
		}
		n, err := strconv.Atoi(v)
		return err == nil && float64(n) >= p.min && float64(n) <= p.max
	}
	return len(v) >= p.minLen && (p.maxLen < 0 || len(v) <= p.maxLen)
}
