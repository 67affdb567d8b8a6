package metrics

import (
	"net/http"
	"strconv"

	"github.com/jobsd/jobsd/job"
)

// Other is the label value for anything outside a label's closed set: an
// unknown method, job type, outcome, error class or reason. Seeing it in a
// dashboard means a list here is behind the code that calls it.
const Other = "other"

// JobTypes are the type label's values, the job types the jobs table's
// CHECK constraint allows. A type that is not here is reported as Other.
var JobTypes = []string{
	string(job.TypeAIPreview),
	string(job.TypeParseDocument),
	string(job.TypeGapDetection),
	string(job.TypeRiskAnalysis),
	string(job.TypeReportGeneration),
}

var jobTypeSet = setOf(JobTypes)

func setOf(values []string) map[string]bool {
	m := make(map[string]bool, len(values))
	for _, v := range values {
		m[v] = true
	}
	return m
}

// oneOf returns v when it is in set, else Other.
func oneOf(set map[string]bool, v string) string {
	if set[v] {
		return v
	}
	return Other
}

func typeLabel(t string) string { return oneOf(jobTypeSet, t) }

var methodSet = setOf([]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
})

// methodLabel keeps the standard methods; Go's server accepts any token as a
// method, and each would otherwise be a new series.
func methodLabel(m string) string { return oneOf(methodSet, m) }

// codeLabel is the status code as text; a value outside 100..599 (which
// a handler cannot write through net/http) is Other.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return Other
	}
	return strconv.Itoa(code)
}
