package client

import (
	"encoding/json"
	"fmt"

	"github.com/jobsd/jobsd/gen"
)

// The result schemas of openapi.yaml, as generated into gen: a job's
// `result` is a free-form object whose shape depends on the job's type.
type (
	// AIPreviewResult is the result of a COMPLETED AI_PREVIEW job.
	AIPreviewResult = gen.AIPreviewResult
	// ParseDocumentResult is the result of a COMPLETED PARSE_DOCUMENT job.
	ParseDocumentResult = gen.ParseDocumentResult
	// DocumentSection is one section of a parsed document.
	DocumentSection = gen.DocumentSection
	// DocumentCounts sizes a parsed document.
	DocumentCounts = gen.DocumentCounts
	// GapDetectionResult is the result of a COMPLETED GAP_DETECTION job.
	GapDetectionResult = gen.GapDetectionResult
	// RequirementCheck is how well the document meets one requirement.
	RequirementCheck = gen.RequirementCheck
	// GapSummary counts the requirements by status.
	GapSummary = gen.GapSummary
	// RiskAnalysisResult is the result of a COMPLETED RISK_ANALYSIS job.
	RiskAnalysisResult = gen.RiskAnalysisResult
	// Risk is one risk found by a RISK_ANALYSIS job.
	Risk = gen.Risk
	// ReportGenerationResult is the result of a COMPLETED REPORT_GENERATION job.
	ReportGenerationResult = gen.ReportGenerationResult
)

// Result is the set of result types DecodeResult decodes.
type Result interface {
	AIPreviewResult | ParseDocumentResult | GapDetectionResult | RiskAnalysisResult | ReportGenerationResult
}

// ResultType returns the job type whose result T is.
func ResultType[T Result]() gen.JobType {
	var zero T
	switch any(zero).(type) {
	case AIPreviewResult:
		return gen.JobTypeAIPREVIEW
	case ParseDocumentResult:
		return gen.JobTypePARSEDOCUMENT
	case GapDetectionResult:
		return gen.JobTypeGAPDETECTION
	case RiskAnalysisResult:
		return gen.JobTypeRISKANALYSIS
	default:
		return gen.JobTypeREPORTGENERATION
	}
}

// DecodeResult decodes the result of a COMPLETED job of T's type, e.g.
// DecodeResult[AIPreviewResult](job). It fails for a job that is not
// COMPLETED, of another type, or without a result.
func DecodeResult[T Result](job *gen.Job) (*T, error) {
	want := ResultType[T]()
	switch {
	case job == nil:
		return nil, fmt.Errorf("client: no job")
	case job.Type != want:
		return nil, fmt.Errorf("client: job %s is %s, not %s", job.Id, job.Type, want)
	case job.Status != gen.COMPLETED:
		return nil, fmt.Errorf("client: job %s is %s, not COMPLETED", job.Id, job.Status)
	case job.Result == nil || string(*job.Result) == "null":
		return nil, fmt.Errorf("client: job %s has no result", job.Id)
	}
	var out T
	if err := json.Unmarshal(*job.Result, &out); err != nil {
		return nil, fmt.Errorf("client: decoding the result of job %s: %w", job.Id, err)
	}
	return &out, nil
}
