package jobtype

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/jobsd/jobsd/internal/prose"
	"github.com/jobsd/jobsd/model"
)

// placeholderRE matches {{name}} and {{ name }}.
var placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}`)

// renderTemplate replaces every placeholder with its variable, in one pass
// (values are not expanded again).
func renderTemplate(tmpl string, vars map[string]string) (string, error) {
	var missing string
	out := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", invalidInput("variables", fmt.Sprintf("has no value for %q", missing))
	}
	return out, nil
}

type previewResult struct {
	Output string `json:"output"`
}

func handleAIPreview(ctx context.Context, env Env, input json.RawMessage) (json.RawMessage, error) {
	in, ok := decodePreviewFast(input)
	if !ok {
		if err := decodeInput(input, &in); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(in.Prompt) == "" {
		return nil, invalidInput("prompt", "is empty")
	}
	var vars map[string]string
	if in.Variables != nil {
		vars = *in.Variables
	}
	prompt, err := renderTemplate(in.Prompt, vars)
	if err != nil {
		return nil, err
	}
	req := model.Request{
		System: "You write a short, factual preview answering the user's prompt.",
		Prompt: prompt,
	}
	if in.ModelId != nil {
		req.ModelID = *in.ModelId
	}
	resp, err := env.Model.Converse(ctx, req)
	if err != nil {
		return nil, err
	}
	out := strings.TrimSpace(resp.Text)
	if out == "" {
		return nil, invalidOutput("the model returned no text")
	}
	if len(out) > MaxReportBytes {
		out = prose.CutBytes(out, MaxReportBytes)
	}
	return marshalResult(previewResult{Output: out}, "prompt")
}
