package jobtype

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"encoding/xml"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
)

var (
	specOnce sync.Once
	spec     *openapi3.T
	specErr  error
)

// validateResult checks result against components.schemas[schemaName] of openapi.yaml.
func validateResult(t *testing.T, schemaName string, result json.RawMessage) {
	t.Helper()
	specOnce.Do(func() {
		spec, specErr = openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	})
	if specErr != nil {
		t.Fatalf("loading openapi.yaml: %v", specErr)
	}
	ref, ok := spec.Components.Schemas[schemaName]
	if !ok {
		t.Fatalf("no schema %s", schemaName)
	}
	var v any
	if err := json.Unmarshal(result, &v); err != nil {
		t.Fatalf("result is not JSON: %v", err)
	}
	if _, isObj := v.(map[string]any); !isObj {
		t.Fatalf("result is not a JSON object: %s", result)
	}
	if err := ref.Value.VisitJSON(v); err != nil {
		t.Fatalf("result does not validate against %s: %v\n%s", schemaName, err, result)
	}
}

// fakeJobs is an owner-scoped job store for Env.LoadJob.
type fakeJobs struct {
	owner string
	jobs  map[string]*job.Job
}

func newFakeJobs() *fakeJobs {
	return &fakeJobs{owner: "alice", jobs: map[string]*job.Job{}}
}

func (f *fakeJobs) add(id, owner string, typ job.Type, status job.Status, result json.RawMessage) {
	f.jobs[id] = &job.Job{UserID: owner, Type: typ, Status: status, Result: result}
}

func (f *fakeJobs) load(_ context.Context, id string) (*job.Job, error) {
	j, ok := f.jobs[id]
	if !ok || j.UserID != f.owner {
		return nil, fmt.Errorf("job %s: %w", id, ErrReferenceNotFound)
	}
	return j, nil
}

func localEnv(jobs *fakeJobs) Env {
	env := Env{Model: model.NewLocal()}
	if jobs != nil {
		env.LoadJob = jobs.load
	}
	return env
}

func run(t *testing.T, typ job.Type, env Env, input any) (json.RawMessage, error) {
	t.Helper()
	raw, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	return Registry()[typ](context.Background(), env, raw)
}

func wantErr(t *testing.T, err error, msg string, retryable bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %q, got none", msg)
	}
	if got := ClientMessage(err); got != msg {
		t.Fatalf("ClientMessage = %q, want %q (err %v)", got, msg, err)
	}
	if IsRetryable(err) != retryable {
		t.Fatalf("IsRetryable = %v, want %v", !retryable, retryable)
	}
}

// buildDOCX writes a minimal DOCX whose paragraphs have the given styles ("" = body).
func buildDOCX(t *testing.T, paras [][2]string) []byte {
	t.Helper()
	var body strings.Builder
	for _, p := range paras {
		body.WriteString("<w:p>")
		if p[0] != "" {
			body.WriteString(`<w:pPr><w:pStyle w:val="` + p[0] + `"/></w:pPr>`)
		}
		// Split the text over two runs, as Word does.
		half := len(p[1]) / 2
		fmt.Fprintf(&body, `<w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">%s</w:t></w:r><w:r><w:t>%s</w:t></w:r>`, xmlEscape(p[1][:half]), xmlEscape(p[1][half:]))
		body.WriteString("</w:p>")
	}
	doc := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>` + body.String() + `<w:sectPr/></w:body></w:document>`
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files := map[string]string{
		"[Content_Types].xml": `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`,
		"word/document.xml":   doc,
	}
	for _, name := range []string{"[Content_Types].xml", "word/document.xml"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(files[name]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// buildPDF writes a minimal valid PDF: one page per entry, one text line per string.
func buildPDF(pages [][]string) []byte {
	var buf bytes.Buffer
	var offsets []int
	obj := func(body string) {
		offsets = append(offsets, buf.Len())
		fmt.Fprintf(&buf, "%d 0 obj\n%s\nendobj\n", len(offsets), body)
	}
	buf.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	n := len(pages)
	// 1 catalog, 2 pages, 3 font, then per page: page object, content stream.
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	kids := make([]string, n)
	for i := range pages {
		kids[i] = fmt.Sprintf("%d 0 R", 4+2*i)
	}
	obj(fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), n))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
	for i, lines := range pages {
		var content strings.Builder
		content.WriteString("BT /F1 12 Tf 72 720 Td 16 TL\n")
		for _, l := range lines {
			l = strings.NewReplacer(`\`, `\\`, "(", `\(`, ")", `\)`).Replace(l)
			fmt.Fprintf(&content, "(%s) Tj T*\n", l)
		}
		content.WriteString("ET")
		obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", 5+2*i))
		obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", content.Len(), content.String()))
	}
	xref := buf.Len()
	fmt.Fprintf(&buf, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
	for _, o := range offsets {
		fmt.Fprintf(&buf, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&buf, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
	return buf.Bytes()
}
