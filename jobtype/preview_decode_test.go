package jobtype

import (
	"reflect"
	"testing"

	"github.com/jobsd/jobsd/gen"
)

var previewInputs = []string{
	`{"prompt": "x"}`,
	`{"prompt":"Summarise the risks for {{crop}} farmers","variables":{"crop":"maize","region":"Rift Valley"}}`,
	`{"prompt": "a\"b\\c\/d\b\f\n\r\te", "modelId": "m-1"}`,
	` { "modelId" : "" , "prompt" : "é – ✓" , "variables" : { } } `,
	`{}`,
	`{"prompt": "\u00e9"}`,
	`{"prompt": "x", "prompt": "y"}`,
	`{"Prompt": "x"}`,
	`{"prompt": "x", "bogus": 1}`,
	`{"prompt": 1}`,
	`{"prompt": null}`,
	`{"prompt": "x", "variables": {"a": 1}}`,
	`{"prompt": "x", "variables": {"a": "1", "a": "2"}}`,
	`{"prompt": "x", "variables": null}`,
	`{"prompt": "x"} {}`,
	`{"prompt": "x"`,
	`{"prompt": "x",}`,
	`{"prompt": "x\`,
	"{\"prompt\": \"\xff\"}",
	"{\"prompt\": \"a\nb\"}",
	`[]`,
	``,
}

// TestDecodePreviewFast: whatever the fast path accepts, decodeInput
// decodes to the same request.
func TestDecodePreviewFast(t *testing.T) {
	accepted := 0
	for _, in := range previewInputs {
		if checkPreviewFast(t, []byte(in)) {
			accepted++
		}
	}
	if accepted != 5 {
		t.Errorf("fast path took %d inputs, want the first 4 and {}", accepted)
	}
}

func FuzzDecodePreviewFast(f *testing.F) {
	for _, in := range previewInputs {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkPreviewFast(t, b) })
}

func checkPreviewFast(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := decodePreviewFast(b)
	if !ok {
		return false
	}
	var want gen.PromptPreviewRequest
	if err := decodeInput(b, &want); err != nil {
		t.Fatalf("%q: fast path accepted what decodeInput rejects: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast path %+v, decodeInput %+v", b, got, want)
	}
	return true
}
