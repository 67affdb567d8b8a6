package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/go-cmp/cmp"
)

// seedPath is the documentation the contract encodes, kept verbatim as
// golden data so that openapi.yaml cannot drift from it unnoticed.
const seedPath = "testdata/get-job-status.txt"

// seed is what the documentation states.
type seed struct {
	examples map[string][]byte // "Completed", "Processing", "Failed" -> JSON as written
	types    []string
	statuses []string
	errors   map[string]string // "400" -> message
}

var seedValues = regexp.MustCompile(`(?m)Values: ((?:[A-Z_]+, )*[A-Z_]+?)(?:[A-Z][a-z]|$)`)

func loadSeed(t *testing.T) seed {
	t.Helper()
	text, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	s := seed{examples: map[string][]byte{}, errors: map[string]string{}}
	for _, name := range []string{"Completed", "Processing", "Failed"} {
		s.examples[name] = jsonAfter(t, string(text), "Example Response ("+name+")")
	}
	values := seedValues.FindAllStringSubmatch(string(text), -1)
	if len(values) != 2 {
		t.Fatalf("want 2 'Values:' lists in the seed, found %d", len(values))
	}
	s.types = strings.Split(values[0][1], ", ")
	s.statuses = strings.Split(values[1][1], ", ")

	_, errs, ok := strings.Cut(string(text), "Error Responses")
	if !ok {
		t.Fatal("no Error Responses section in the seed")
	}
	sc := bufio.NewScanner(strings.NewReader(errs))
	var lines []string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	for i := 0; i+2 < len(lines); i++ {
		if regexp.MustCompile(`^\d{3}$`).MatchString(lines[i]) && lines[i+1] == "error" {
			s.errors[lines[i]] = lines[i+2]
		}
	}
	if len(s.errors) != 3 {
		t.Fatalf("want 3 documented errors, found %v", s.errors)
	}
	return s
}

// jsonAfter returns the first balanced {...} block after marker.
func jsonAfter(t *testing.T, text, marker string) []byte {
	t.Helper()
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("seed has no %q", marker)
	}
	start := strings.Index(rest, "{")
	depth, inString, escaped := 0, false, false
	for i := start; i < len(rest); i++ {
		c := rest[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inString:
			escaped = true
		case c == '"':
			inString = !inString
		case c == '{' && !inString:
			depth++
		case c == '}' && !inString:
			depth--
			if depth == 0 {
				b := []byte(rest[start : i+1])
				if !json.Valid(b) {
					t.Fatalf("example after %q is not JSON", marker)
				}
				return b
			}
		}
	}
	t.Fatalf("unbalanced example after %q", marker)
	return nil
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func semantic(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

// TestSeedMatchesSpec: the documentation's examples, enums and error
// messages are exactly those of openapi.yaml.
func TestSeedMatchesSpec(t *testing.T) {
	s := loadSeed(t)
	doc, _ := loadSpec(t)

	examples := doc.Paths.Find("/api/jobs/{id}").Get.Responses.Status(200).Value.Content.Get("application/json").Examples
	for name, key := range map[string]string{"Completed": "completed", "Processing": "processing", "Failed": "failed"} {
		ex, ok := examples[key]
		if !ok {
			t.Errorf("openapi.yaml has no %q example", key)
			continue
		}
		got, _ := json.Marshal(ex.Value.Value)
		if diff := cmp.Diff(semantic(t, s.examples[name]), semantic(t, got)); diff != "" {
			t.Errorf("example %s differs from the documentation (-doc +spec):\n%s", name, diff)
		}
	}

	enum := func(name string) []string {
		var out []string
		for _, v := range doc.Components.Schemas[name].Value.Enum {
			out = append(out, v.(string))
		}
		return out
	}
	if diff := cmp.Diff(s.types, enum("JobType")); diff != "" {
		t.Errorf("JobType enum (-doc +spec):\n%s", diff)
	}
	if diff := cmp.Diff(s.statuses, enum("JobStatus")); diff != "" {
		t.Errorf("JobStatus enum (-doc +spec):\n%s", diff)
	}

	for status, resp := range map[string]string{"400": "InvalidUUID", "401": "Unauthorized", "404": "NotFound"} {
		ex := doc.Components.Responses[resp].Value.Content.Get("application/json").Example
		got, _ := ex.(map[string]any)["error"].(string)
		if got != s.errors[status] {
			t.Errorf("%s message: doc %q, spec %q", status, s.errors[status], got)
		}
		op := doc.Paths.Find("/api/jobs/{id}").Get.Responses.Status(mustAtoi(status))
		if op == nil || op.Ref != "#/components/responses/"+resp {
			t.Errorf("GET /api/jobs/{id} does not answer %s with %s", status, resp)
		}
	}
}

func mustAtoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestSpecValid: openapi.yaml is a valid OpenAPI document and every example
// in it validates against its schema.
func TestSpecValid(t *testing.T) {
	doc, _ := loadSpec(t)
	if err := doc.Validate(t.Context(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
}
