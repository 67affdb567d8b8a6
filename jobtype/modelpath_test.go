package jobtype

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
)

// openAIEnv serves every chat completion with answer, over real HTTP.
func openAIEnv(t *testing.T, answer string) Env {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		if rf, _ := req["response_format"].(map[string]any); rf["type"] != "json_object" {
			t.Errorf("JSON not requested: %v", req["response_format"])
		}
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": answer}}}})
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	p, err := model.NewOpenAI(model.OpenAIConfig{BaseURL: srv.URL + "/v1", DefaultModelID: "m", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return Env{Model: p}
}

func TestGapDetectionWithModel(t *testing.T) {
	in := map[string]any{"text": farmPlan, "requirements": []string{"A", "B"}}
	good := "```json\n" + `{"requirements":[{"requirement":"B","status":"missing","evidence":[]},{"requirement":"A","status":"met","evidence":["Staff receive safety training."]}]}` + "\n```"
	res, err := run(t, job.TypeGapDetection, openAIEnv(t, good), in)
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "GapDetectionResult", res)
	if !strings.HasPrefix(string(res), `{"requirements":[{"requirement":"A","status":"met"`) || !strings.Contains(string(res), `"summary":{"met":1,"partial":0,"missing":1}`) {
		t.Errorf("result = %s", res)
	}
	for _, bad := range []string{
		`not json`,
		`{"requirements":[{"requirement":"A","status":"done","evidence":[]},{"requirement":"B","status":"met","evidence":[]}]}`,
		`{"requirements":[{"requirement":"A","status":"met","evidence":[]}]}`,
		`{"requirements":[{"requirement":"A","status":"met","evidence":[]},{"requirement":"A","status":"met","evidence":[]}]}`,
		`{"requirements":[{"requirement":"A","status":"met"},{"requirement":"B","status":"met","evidence":[]}]}`,
	} {
		_, err := run(t, job.TypeGapDetection, openAIEnv(t, bad), in)
		if err == nil || !IsRetryable(err) || !strings.HasPrefix(ClientMessage(err), "Invalid model output: ") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestRiskAnalysisWithModel(t *testing.T) {
	good := `{"risks":[{"category":"Weather","description":"Drought","likelihood":"High","impact":"medium","mitigation":"Irrigate"}]}`
	res, err := run(t, job.TypeRiskAnalysis, openAIEnv(t, good), map[string]any{"text": riskText})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "RiskAnalysisResult", res)
	for _, bad := range []string{`{}`, `{"risks":[{"category":"W","description":"D","likelihood":"very","impact":"low","mitigation":"M"}]}`, `{"risks":[{"category":"","description":"D","likelihood":"low","impact":"low","mitigation":"M"}]}`} {
		_, err := run(t, job.TypeRiskAnalysis, openAIEnv(t, bad), map[string]any{"text": riskText})
		if err == nil || !IsRetryable(err) || !strings.HasPrefix(ClientMessage(err), "Invalid model output: ") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}
