package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

// stdin is where `--input -` reads from.
var stdin io.Reader = os.Stdin

// typeAliases are the short names create and list accept besides the enum.
var typeAliases = map[string]gen.JobType{
	"preview": gen.JobTypeAIPREVIEW,
	"parse":   gen.JobTypePARSEDOCUMENT,
	"gap":     gen.JobTypeGAPDETECTION,
	"risk":    gen.JobTypeRISKANALYSIS,
	"report":  gen.JobTypeREPORTGENERATION,
}

// jobTypeOf accepts PARSE_DOCUMENT, parse_document, parse-document or parse.
func jobTypeOf(s string) (gen.JobType, bool) {
	if t, ok := typeAliases[strings.ToLower(s)]; ok {
		return t, true
	}
	t := gen.JobType(strings.ToUpper(strings.ReplaceAll(s, "-", "_")))
	return t, t.Valid()
}

// contentTypes maps file extensions to the content types PARSE_DOCUMENT takes.
var contentTypes = map[string]string{
	".txt":      "text/plain",
	".text":     "text/plain",
	".md":       "text/markdown",
	".markdown": "text/markdown",
	".pdf":      "application/pdf",
	".docx":     "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

const createUsage = `Usage:
  jobsctl create preview --prompt TEXT [--var k=v ...] [--model ID] [flags]
  jobsctl create parse --file doc.pdf [--content-type TYPE] [flags]
  jobsctl create TYPE --input FILE.json|- [flags]
  jobsctl create TYPE --input-json '{...}' [flags]

Creates a job and prints it as JSON (with -q only its id). TYPE is one of
PARSE_DOCUMENT (parse), GAP_DETECTION (gap), RISK_ANALYSIS (risk) or
REPORT_GENERATION (report); the input is that type's input object, e.g.
  jobsctl create risk --input-json '{"text":"Roads flood in April."}'
AI_PREVIEW jobs (admins only) are created with 'create preview'.
Follow the job with 'jobsctl wait ID'.
`

// kvFlags collects repeated --var k=v flags.
type kvFlags map[string]string

func (m kvFlags) String() string { return "" }

func (m kvFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	m[k] = v
	return nil
}

// createFlags are the flags of 'create TYPE'; those that TYPE does not
// take are nil.
type createFlags struct {
	key   *string
	quiet *bool

	// AI_PREVIEW.
	prompt, modelID *string
	vars            kvFlags

	// Every other type (file and contentType: PARSE_DOCUMENT only).
	input, inputJSON, file, contentType *string
}

// newCreateFlags defines on fs the flags of 'create TYPE' for typ.
func newCreateFlags(fs *flag.FlagSet, typ gen.JobType) *createFlags {
	f := &createFlags{vars: kvFlags{}}
	f.key = fs.String("idempotency-key", "", "Idempotency-Key: makes the create safe to retry")
	f.quiet = fs.Bool("q", false, "print only the job's id")
	if typ == gen.JobTypeAIPREVIEW {
		f.prompt = fs.String("prompt", "", "the prompt template (required); {{name}} is replaced by the variable name")
		fs.Var(f.vars, "var", "a template variable `name=value` (repeatable)")
		f.modelID = fs.String("model", "", "the model `ID` to ask (server default when empty)")
	} else {
		f.input = fs.String("input", "", "read the input object from `FILE` (- for stdin)")
		f.inputJSON = fs.String("input-json", "", "the input object as inline `JSON`")
		if typ == gen.JobTypePARSEDOCUMENT {
			f.file = fs.String("file", "", "the document `FILE` to parse (.txt, .md, .pdf, .docx); sent base64")
			f.contentType = fs.String("content-type", "", "the document's content `type` (default: from the file extension)")
		}
	}
	return f
}

// previewRequest is the request of 'create preview' (whose --prompt the
// caller checked).
func (f *createFlags) previewRequest() gen.PromptPreviewRequest {
	req := gen.PromptPreviewRequest{Prompt: *f.prompt}
	if len(f.vars) > 0 {
		m := map[string]string(f.vars)
		req.Variables = &m
	}
	if *f.modelID != "" {
		req.ModelId = f.modelID
	}
	return req
}

func runCreate(g *globals, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(stderr, createUsage)
			return exitOK
		}
		fmt.Fprint(stderr, "jobsctl create: want a job type\n\n"+createUsage)
		return exitUsage
	}
	typ, ok := jobTypeOf(args[0])
	if !ok {
		fmt.Fprintf(stderr, "jobsctl create: unknown job type %q\n\n%s", args[0], createUsage)
		return exitUsage
	}
	fs := newFlagSet("create "+args[0], stderr, g)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), createUsage)
		fmt.Fprintf(fs.Output(), "\nFlags of 'create %s':\n", args[0])
		fs.PrintDefaults()
	}
	f := newCreateFlags(fs, typ)
	pos, code, ok := parseInterspersed(fs, args[1:])
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	opts := client.CreateOptions{IdempotencyKey: *f.key}

	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	var job *gen.Job
	if typ == gen.JobTypeAIPREVIEW {
		if *f.prompt == "" {
			return usageError(fs, stderr, "--prompt is required")
		}
		job, err = c.CreatePreview(background(), f.previewRequest(), opts)
	} else {
		var body any
		body, code, ok = buildInput(fs, stderr, f.input, f.inputJSON, f.file, f.contentType)
		if !ok {
			return code
		}
		job, err = c.CreateJob(background(), string(typ), body, opts)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *f.quiet {
		fmt.Fprintln(stdout, job.Id)
		return exitOK
	}
	if err := printJSON(stdout, job); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// buildInput returns the input object from exactly one of --input,
// --input-json and (PARSE_DOCUMENT) --file.
func buildInput(fs *flag.FlagSet, stderr io.Writer, input, inputJSON, file, contentType *string) (any, int, bool) {
	given := 0
	for _, p := range []*string{input, inputJSON, file} {
		if p != nil && *p != "" {
			given++
		}
	}
	switch {
	case given == 0 && file != nil:
		return nil, usageError(fs, stderr, "give one of --file, --input and --input-json"), false
	case given == 0:
		return nil, usageError(fs, stderr, "give one of --input and --input-json"), false
	case given > 1:
		return nil, usageError(fs, stderr, "give only one of --file, --input and --input-json"), false
	}
	if contentType != nil && *contentType != "" && *file == "" {
		return nil, usageError(fs, stderr, "--content-type goes with --file"), false
	}
	if file != nil && *file != "" {
		ct := *contentType
		if ct == "" {
			ct = contentTypes[strings.ToLower(filepath.Ext(*file))]
			if ct == "" {
				return nil, usageError(fs, stderr, "cannot tell the content type of %q from its extension: give --content-type", *file), false
			}
		}
		data, err := os.ReadFile(*file)
		if err != nil {
			return nil, fail(stderr, err), false
		}
		return map[string]string{
			"document":    base64.StdEncoding.EncodeToString(data),
			"contentType": ct,
			"filename":    filepath.Base(*file),
		}, 0, true
	}
	var raw []byte
	src := "--input-json"
	if *inputJSON != "" {
		raw = []byte(*inputJSON)
	} else {
		var err error
		src = *input
		if *input == "-" {
			src = "stdin"
			raw, err = io.ReadAll(stdin)
		} else {
			raw, err = os.ReadFile(*input)
		}
		if err != nil {
			return nil, fail(stderr, err), false
		}
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, usageError(fs, stderr, "%s is not a JSON object: %v", src, err), false
	}
	return json.RawMessage(raw), 0, true
}
