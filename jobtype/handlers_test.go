package jobtype

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
)

func TestPreview(t *testing.T) {
	env := localEnv(nil)
	res, err := run(t, job.TypeAIPreview, env, map[string]any{
		"prompt":    "Summarise the market risks for {{crop}} farmers in {{ region }}. {{crop}} prices fell sharply this season. Storage losses hit {{crop}} farmers hard.",
		"variables": map[string]string{"crop": "maize", "region": "Rift Valley"},
	})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "AIPreviewResult", res)
	var out previewResult
	_ = json.Unmarshal(res, &out)
	if !strings.Contains(out.Output, "maize farmers in Rift Valley") || strings.Contains(out.Output, "{{") {
		t.Errorf("output = %q", out.Output)
	}

	_, err = run(t, job.TypeAIPreview, env, map[string]any{"prompt": "Hello {{ name }} from {{place}}", "variables": map[string]string{"place": "x"}})
	wantErr(t, err, `Invalid input: field "variables" has no value for "name"`, false)

	_, err = run(t, job.TypeAIPreview, env, map[string]any{"prompt": "x", "bogus": 1})
	wantErr(t, err, `Invalid input: field "bogus" is not allowed`, false)
}

func TestRenderTemplateSinglePass(t *testing.T) {
	got, err := renderTemplate("{{a}}-{{ b }}", map[string]string{"a": "{{b}}", "b": "B"})
	if err != nil || got != "{{b}}-B" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestPreviewMarkers(t *testing.T) {
	h := Registry()[job.TypeAIPreview]
	env := localEnv(nil)
	in := func(marker string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"prompt": "Tell me about goats. " + marker})
		return b
	}
	// The worker's loop: up to 3 attempts while retryable.
	attempts := func(marker string) (int, error) {
		var err error
		for a := 1; a <= 3; a++ {
			_, err = h(model.WithAttempt(context.Background(), a), env, in(marker))
			if err == nil || !IsRetryable(err) {
				return a, err
			}
		}
		return 3, err
	}
	n, err := attempts("[[simulate:throttle]]")
	if n != 3 {
		t.Errorf("throttle: %d attempts", n)
	}
	wantErr(t, err, "Bedrock API error: ThrottlingException - Rate exceeded", true)
	if n, err := attempts("[[simulate:throttle-once]]"); n != 2 || err != nil {
		t.Errorf("throttle-once: %d %v", n, err)
	}
	if n, err := attempts("[[simulate:throttle-twice]]"); n != 3 || err != nil {
		t.Errorf("throttle-twice: %d %v", n, err)
	}
	n, err = attempts("[[simulate:permanent]]")
	if n != 1 {
		t.Errorf("permanent: %d attempts", n)
	}
	wantErr(t, err, "Local model error: ValidationException - simulated permanent failure", false)
	_, err = attempts("[[simulate:invalid-output]]")
	wantErr(t, err, "Invalid model output: the model returned no text", true)
}

func TestParseDocument(t *testing.T) {
	md := "Intro text before any heading.\n\n# Overview\n\nThe project grows maize.\n\n## Risks ##\n\nDrought is likely.\n\n```\n# not a heading\n```\n"
	text := "ANNUAL REPORT\n\nThe farm had a good year.\nYields rose.\n\nMarket Outlook\n\nPrices are expected to fall."
	docx := buildDOCX(t, [][2]string{{"Title", "Farm Plan"}, {"", "We grow maize and beans."}, {"Heading2", "Water"}, {"", "Irrigation from the river."}, {"", ""}})
	pdfDoc := buildPDF([][]string{{"Quarterly report", "Revenue grew by 10 percent."}, {"Costs rose because of fuel prices."}})
	cases := []struct {
		name, ct string
		doc      []byte
		sections []section
		pages    int
	}{
		{"markdown", ContentTypeMarkdown, []byte(md), []section{
			{"", 0, "Intro text before any heading."},
			{"Overview", 1, "The project grows maize."},
			{"Risks", 2, "Drought is likely.\n\n```\n# not a heading\n```"},
		}, 0},
		{"text", ContentTypeText, []byte(strings.ReplaceAll(text, "\n", "\r\n")), []section{
			{"ANNUAL REPORT", 1, "The farm had a good year.\nYields rose."},
			{"Market Outlook", 1, "Prices are expected to fall."},
		}, 0},
		{"docx", ContentTypeDOCX, docx, []section{
			{"Farm Plan", 1, "We grow maize and beans."},
			{"Water", 2, "Irrigation from the river."},
		}, 0},
		{"pdf", ContentTypePDF, pdfDoc, nil, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": c.doc, "contentType": c.ct})
			if err != nil {
				t.Fatal(err)
			}
			validateResult(t, "ParseDocumentResult", res)
			var got parseResult
			_ = json.Unmarshal(res, &got)
			if got.ContentType != c.ct || got.Counts.Sections != len(got.Sections) || got.Counts.Words == 0 || got.Counts.Characters == 0 {
				t.Errorf("result = %s", res)
			}
			if c.sections != nil && fmt.Sprint(got.Sections) != fmt.Sprint(c.sections) {
				t.Errorf("sections =\n%+v\nwant\n%+v", got.Sections, c.sections)
			}
			if c.pages > 0 {
				if got.Counts.Pages == nil || *got.Counts.Pages != c.pages {
					t.Errorf("pages = %v", got.Counts.Pages)
				}
				all := got.plainText()
				for _, want := range []string{"Quarterly report", "Revenue grew by 10 percent.", "fuel prices"} {
					if !strings.Contains(all, want) {
						t.Errorf("PDF text lacks %q: %q", want, all)
					}
				}
			} else if got.Counts.Pages != nil {
				t.Errorf("pages set for %s", c.ct)
			}
		})
	}
}

func TestParseDocumentCounts(t *testing.T) {
	res, err := run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": []byte("# Título\n\nDos palabras"), "contentType": ContentTypeMarkdown})
	if err != nil {
		t.Fatal(err)
	}
	var got parseResult
	_ = json.Unmarshal(res, &got)
	if got.Counts.Words != 3 || got.Counts.Characters != len([]rune("Título"))+len([]rune("Dos palabras")) || got.Counts.Sections != 1 {
		t.Errorf("counts = %+v", got.Counts)
	}
}

func TestParseDocumentMalformed(t *testing.T) {
	cases := []struct{ ct, kind string }{
		{ContentTypePDF, "PDF"},
		{ContentTypeDOCX, "DOCX"},
	}
	for _, c := range cases {
		for _, doc := range [][]byte{[]byte("not a document at all"), []byte("%PDF-1.4\n1 0 obj garbage"), []byte("PK\x03\x04 broken zip")} {
			_, err := run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": doc, "contentType": c.ct})
			wantErr(t, err, fmt.Sprintf(`Invalid input: field "document" is not a readable %s file`, c.kind), false)
		}
	}
	_, err := run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": []byte{0xff, 0xfe, 0x00, 0x41}, "contentType": ContentTypeText})
	wantErr(t, err, `Invalid input: field "document" is not a readable text file`, false)
	// A zip without word/document.xml.
	_, err = run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": buildPDF(nil)[:0:0], "contentType": ContentTypeDOCX})
	if err == nil {
		t.Fatal("empty document accepted")
	}
}

const farmPlan = `Our farm will install drip irrigation on all fields before the dry season.
Staff receive safety training every quarter.
We keep a reserve fund for equipment repairs.
Soil samples are tested once a year.`

func TestGapDetection(t *testing.T) {
	res, err := run(t, job.TypeGapDetection, localEnv(nil), map[string]any{
		"text": farmPlan,
		"requirements": []string{
			"Install drip irrigation on all fields",             // met
			"Provide quarterly safety training and fire drills", // partial
			"Obtain organic certification for exports",          // missing
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "GapDetectionResult", res)
	var got gapResult
	_ = json.Unmarshal(res, &got)
	want := []string{"met", "partial", "missing"}
	for i, it := range got.Requirements {
		if it.Status != want[i] {
			t.Errorf("%q: status %s, want %s (evidence %v)", it.Requirement, it.Status, want[i], *it.Evidence)
		}
	}
	if ev := *got.Requirements[0].Evidence; len(ev) == 0 || !strings.Contains(ev[0], "drip irrigation") {
		t.Errorf("evidence = %v", ev)
	}
	if len(*got.Requirements[2].Evidence) != 0 {
		t.Errorf("missing requirement has evidence")
	}
	if got.Summary != (gapSummary{Met: 1, Partial: 1, Missing: 1}) {
		t.Errorf("summary = %+v", got.Summary)
	}
}

func parsedJob(t *testing.T, md string) json.RawMessage {
	t.Helper()
	res, err := run(t, job.TypeParseDocument, localEnv(nil), map[string]any{"document": []byte(md), "contentType": ContentTypeMarkdown})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

const (
	idParsed  = "11111111-1111-4111-8111-111111111111"
	idForeign = "22222222-2222-4222-8222-222222222222"
	idRunning = "33333333-3333-4333-8333-333333333333"
	idMissing = "44444444-4444-4444-8444-444444444444"
	idPreview = "55555555-5555-4555-8555-555555555555"
	idGap     = "66666666-6666-4666-8666-666666666666"
	idRisk    = "77777777-7777-4777-8777-777777777777"
	idReport  = "88888888-8888-4888-8888-888888888888"
)

func TestReferencedDocument(t *testing.T) {
	jobs := newFakeJobs()
	jobs.add(idParsed, "alice", job.TypeParseDocument, "COMPLETED", parsedJob(t, "# Plan\n\n"+farmPlan))
	jobs.add(idForeign, "bob", job.TypeParseDocument, "COMPLETED", parsedJob(t, "# Bob's secret\n\nDrip irrigation everywhere."))
	jobs.add(idRunning, "alice", job.TypeParseDocument, "RUNNING", nil)
	jobs.add(idPreview, "alice", job.TypeAIPreview, "COMPLETED", json.RawMessage(`{"output":"x"}`))
	env := localEnv(jobs)

	res, err := run(t, job.TypeGapDetection, env, map[string]any{"documentJobId": idParsed, "requirements": []string{"drip irrigation on all fields"}})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "GapDetectionResult", res)
	if !strings.Contains(string(res), `"met"`) {
		t.Errorf("result = %s", res)
	}
	for _, typ := range []job.Type{job.TypeGapDetection, job.TypeRiskAnalysis} {
		in := func(id string) map[string]any {
			return map[string]any{"documentJobId": id, "requirements": []string{"x"}}
		}
		if typ == job.TypeRiskAnalysis {
			in = func(id string) map[string]any { return map[string]any{"documentJobId": id} }
		}
		_, err = run(t, typ, env, in(idForeign))
		wantErr(t, err, "Referenced job "+idForeign+" not found", false)
		_, err = run(t, typ, env, in(idMissing))
		wantErr(t, err, "Referenced job "+idMissing+" not found", false)
		_, err = run(t, typ, env, in(idRunning))
		wantErr(t, err, "Referenced job "+idRunning+" is not COMPLETED", false)
		_, err = run(t, typ, env, in(idPreview))
		wantErr(t, err, "Referenced job "+idPreview+" is not a PARSE_DOCUMENT job", false)
	}
	_, err = run(t, job.TypeRiskAnalysis, env, map[string]any{})
	wantErr(t, err, `Invalid input: field "text" or documentJobId is required`, false)
	_, err = run(t, job.TypeRiskAnalysis, env, map[string]any{"text": "a", "documentJobId": idParsed})
	wantErr(t, err, `Invalid input: field "documentJobId" must not be given together with text`, false)

	// A LoadJob failure that is not "not found" is internal and retryable.
	env.LoadJob = func(context.Context, string) (*job.Job, error) { return nil, errors.New("db down at 10.0.0.5") }
	_, err = run(t, job.TypeRiskAnalysis, env, map[string]any{"documentJobId": idParsed})
	wantErr(t, err, "Internal error while processing the job", true)
}

const riskText = `Maize prices fell 30% after the harvest and traders expect volatile prices again next year.
A severe drought in March destroyed part of the crop, and rainfall is becoming less reliable.
Our main fertiliser supplier is often late with deliveries.
The cooperative's accounts were hit by a phishing attack last month.`

func TestRiskAnalysis(t *testing.T) {
	res, err := run(t, job.TypeRiskAnalysis, localEnv(nil), map[string]any{"text": riskText, "focus": "weather"})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "RiskAnalysisResult", res)
	var got riskResult
	_ = json.Unmarshal(res, &got)
	cats := map[string]risk{}
	for _, r := range got.Risks {
		cats[r.Category] = r
	}
	for _, c := range []string{"Financial and market", "Weather and climate", "Supply chain", "Security"} {
		if _, ok := cats[c]; !ok {
			t.Errorf("missing category %s in %s", c, res)
		}
	}
	if got.Risks[0].Category != "Weather and climate" {
		t.Errorf("focus not first: %s", got.Risks[0].Category)
	}
	if w := cats["Weather and climate"]; w.Impact != "high" || !strings.Contains(w.Description, "severe drought") {
		t.Errorf("weather risk = %+v", w)
	}
	if f := cats["Financial and market"]; f.Impact != "high" || f.Likelihood == "low" {
		t.Errorf("financial risk = %+v", f)
	}

	res, err = run(t, job.TypeRiskAnalysis, localEnv(nil), map[string]any{"text": "The committee met on Tuesday and approved the minutes."})
	if err != nil {
		t.Fatal(err)
	}
	validateResult(t, "RiskAnalysisResult", res)
	if string(res) != `{"risks":[]}` {
		t.Errorf("no-risk text: %s", res)
	}

	// Markers in the analysed text work with the local provider.
	_, err = run(t, job.TypeRiskAnalysis, localEnv(nil), map[string]any{"text": riskText + " [[simulate:throttle]]"})
	wantErr(t, err, "Bedrock API error: ThrottlingException - Rate exceeded", true)
	_, err = run(t, job.TypeGapDetection, localEnv(nil), map[string]any{"text": "x [[simulate:invalid-output]]", "requirements": []string{"y"}})
	wantErr(t, err, "Invalid model output: simulated invalid output", true)
}

func TestReportGeneration(t *testing.T) {
	jobs := newFakeJobs()
	env := localEnv(jobs)
	mustRun := func(typ job.Type, in any) json.RawMessage {
		res, err := run(t, typ, env, in)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	jobs.add(idParsed, "alice", job.TypeParseDocument, "COMPLETED", parsedJob(t, "# Plan\n\n"+farmPlan+"\n\n## Details\n\nMore | text."))
	jobs.add(idPreview, "alice", job.TypeAIPreview, "COMPLETED", mustRun(job.TypeAIPreview, map[string]any{"prompt": riskText}))
	jobs.add(idGap, "alice", job.TypeGapDetection, "COMPLETED", mustRun(job.TypeGapDetection, map[string]any{"text": farmPlan, "requirements": []string{"drip irrigation", "organic | certification"}}))
	jobs.add(idRisk, "alice", job.TypeRiskAnalysis, "COMPLETED", mustRun(job.TypeRiskAnalysis, map[string]any{"text": riskText}))
	jobs.add(idForeign, "bob", job.TypeRiskAnalysis, "COMPLETED", json.RawMessage(`{"risks":[]}`))
	jobs.add(idRunning, "alice", job.TypeRiskAnalysis, "PENDING", nil)

	// From sections only.
	res := mustRun(job.TypeReportGeneration, map[string]any{"title": "Season review", "sections": []map[string]string{
		{"heading": "Summary", "body": "A good year.\n\n# Inner heading"}, {"heading": "Empty", "body": ""}}})
	validateResult(t, "ReportGenerationResult", res)
	var r reportResult
	_ = json.Unmarshal(res, &r)
	if r.Title != "Season review" || r.Markdown != "# Season review\n\n## Summary\n\nA good year.\n\n### Inner heading\n\n## Empty\n" {
		t.Errorf("report = %q", r.Markdown)
	}

	// From referenced jobs of every type.
	jobs.add(idReport, "alice", job.TypeReportGeneration, "COMPLETED", res)
	res = mustRun(job.TypeReportGeneration, map[string]any{"title": "Full", "jobIds": []string{idParsed, idPreview, idGap, idRisk, idReport}})
	validateResult(t, "ReportGenerationResult", res)
	_ = json.Unmarshal(res, &r)
	for _, want := range []string{
		"## Parsed document (job " + idParsed + ")", "### Plan", "#### Details", "More | text.",
		"## AI preview (job " + idPreview + ")", "Local preview",
		"## Gap analysis (job " + idGap + ")", "| Requirement | Status | Evidence |", "| drip irrigation | met |", `organic \| certification`,
		"## Risk analysis (job " + idRisk + ")", "| Weather and climate | ",
		"## Season review (job " + idReport + ")", "### Summary", "#### Inner heading",
	} {
		if !strings.Contains(r.Markdown, want) {
			t.Errorf("report lacks %q:\n%s", want, r.Markdown)
		}
	}

	_, err := run(t, job.TypeReportGeneration, env, map[string]any{"title": "x", "jobIds": []string{idRisk, idForeign}})
	wantErr(t, err, "Referenced job "+idForeign+" not found", false)
	_, err = run(t, job.TypeReportGeneration, env, map[string]any{"title": "x", "jobIds": []string{idRunning}})
	wantErr(t, err, "Referenced job "+idRunning+" is not COMPLETED", false)
	_, err = run(t, job.TypeReportGeneration, env, map[string]any{"title": "x"})
	wantErr(t, err, `Invalid input: field "sections" or jobIds must not both be empty`, false)
}

func TestErrorHelpers(t *testing.T) {
	me := &model.Error{Provider: "Bedrock", Code: "ThrottlingException", Message: "Rate exceeded", Retryable: true}
	cases := []struct {
		err       error
		msg       string
		retryable bool
	}{
		{me, "Bedrock API error: ThrottlingException - Rate exceeded", true},
		{fmt.Errorf("wrapped: %w", me), "Bedrock API error: ThrottlingException - Rate exceeded", true},
		{&model.Error{Provider: "Bedrock", Code: "ValidationException", Message: "bad", Retryable: false}, "Bedrock API error: ValidationException - bad", false},
		{Permanent("Invalid input: field \"x\" is bad"), "Invalid input: field \"x\" is bad", false},
		{Retryable("Invalid model output: empty"), "Invalid model output: empty", true},
		{context.DeadlineExceeded, "Internal error while processing the job", true},
		{errors.New("pq: connection refused 10.1.2.3"), "Internal error while processing the job", true},
	}
	for _, c := range cases {
		if got := ClientMessage(c.err); got != c.msg {
			t.Errorf("ClientMessage(%v) = %q", c.err, got)
		}
		if IsRetryable(c.err) != c.retryable {
			t.Errorf("IsRetryable(%v) = %v", c.err, !c.retryable)
		}
	}
	if len(Registry()) != 5 {
		t.Errorf("registry has %d types", len(Registry()))
	}
}
