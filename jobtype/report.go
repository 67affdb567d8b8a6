package jobtype

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/prose"
	"github.com/jobsd/jobsd/job"
)

// reportResult is ReportGenerationResult.
type reportResult struct {
	Title    string `json:"title"`
	Markdown string `json:"markdown"`
}

func handleReportGeneration(ctx context.Context, env Env, input json.RawMessage) (json.RawMessage, error) {
	var in gen.ReportGenerationInput
	if err := decodeInput(input, &in); err != nil {
		return nil, err
	}
	title := strings.TrimSpace(in.Title)
	if title == "" {
		return nil, invalidInput("title", "is empty")
	}
	var sections []gen.ReportSection
	if in.Sections != nil {
		sections = *in.Sections
	}
	var ids []string
	if in.JobIds != nil {
		for _, id := range *in.JobIds {
			ids = append(ids, id.String())
		}
	}
	if len(sections) == 0 && len(ids) == 0 {
		return nil, invalidInput("sections", "or jobIds must not both be empty")
	}
	if len(sections) > 50 {
		return nil, invalidInput("sections", "must have at most 50 items")
	}
	if len(ids) > 50 {
		return nil, invalidInput("jobIds", "must have at most 50 items")
	}

	// Load every reference first so that a bad one fails the job before any work.
	refs := make([]*job.Job, len(ids))
	for i, id := range ids {
		ref, err := loadReference(ctx, env, id, "")
		if err != nil {
			return nil, err
		}
		refs[i] = ref
	}

	var md strings.Builder
	md.WriteString("# " + oneLine(title) + "\n")
	for i, s := range sections {
		if strings.TrimSpace(s.Heading) == "" {
			return nil, invalidInput(fmt.Sprintf("sections[%d].heading", i), "is empty")
		}
		md.WriteString("\n## " + oneLine(s.Heading) + "\n")
		if body := strings.TrimSpace(s.Body); body != "" {
			md.WriteString("\n" + demoteHeadings(body, 2) + "\n")
		}
	}
	for i, ref := range refs {
		if err := renderJob(&md, ids[i], ref); err != nil {
			return nil, err
		}
		if md.Len() > MaxReportBytes {
			break
		}
	}
	out := md.String()
	if len(out) > MaxReportBytes {
		out = prose.CutBytes(out, MaxReportBytes-100) + "\n\n*(Report truncated at 1 MiB.)*\n"
	}
	return marshalResult(reportResult{Title: title, Markdown: out}, "jobIds")
}

// renderJob appends a referenced job's result as a level-2 section.
func renderJob(md *strings.Builder, id string, ref *job.Job) error {
	switch ref.Type {
	case job.TypeAIPreview:
		return renderAs(md, id, ref, renderPreview)
	case job.TypeParseDocument:
		return renderAs(md, id, ref, renderParsed)
	case job.TypeGapDetection:
		return renderAs(md, id, ref, renderGaps)
	case job.TypeRiskAnalysis:
		return renderAs(md, id, ref, renderRisks)
	case job.TypeReportGeneration:
		return renderAs(md, id, ref, renderReport)
	default:
		return fmt.Errorf("job %s has unknown type %q", id, ref.Type)
	}
}

// renderAs decodes the result of job id (ref) as an R and appends it with
// render.
func renderAs[R any](md *strings.Builder, id string, ref *job.Job, render func(md *strings.Builder, id string, r R)) error {
	var r R
	if err := json.Unmarshal(ref.Result, &r); err != nil {
		return fmt.Errorf("decoding result of job %s: %w", id, err)
	}
	render(md, id, r)
	return nil
}

// renderPreview appends an AI preview: its output.
func renderPreview(md *strings.Builder, id string, r previewResult) {
	fmt.Fprintf(md, "\n## AI preview (job %s)\n\n%s\n", id, demoteHeadings(strings.TrimSpace(r.Output), 2))
}

// renderParsed appends a parsed document: its counts, then its sections.
func renderParsed(md *strings.Builder, id string, r parseResult) {
	fmt.Fprintf(md, "\n## Parsed document (job %s)\n\n", id)
	fmt.Fprintf(md, "%s: %d sections, %d words, %d characters", r.ContentType, r.Counts.Sections, r.Counts.Words, r.Counts.Characters)
	if r.Counts.Pages != nil {
		fmt.Fprintf(md, ", %d pages", *r.Counts.Pages)
	}
	md.WriteString(".\n")
	for _, s := range r.Sections {
		if s.Heading != "" {
			fmt.Fprintf(md, "\n%s %s\n", strings.Repeat("#", min(max(s.Level, 1)+2, 6)), oneLine(s.Heading))
		}
		if t := strings.TrimSpace(s.Text); t != "" {
			md.WriteString("\n" + demoteHeadings(t, 3) + "\n")
		}
		if md.Len() > MaxReportBytes {
			break
		}
	}
}

// renderGaps appends a gap analysis: its summary and a table of requirements.
func renderGaps(md *strings.Builder, id string, r gapResult) {
	fmt.Fprintf(md, "\n## Gap analysis (job %s)\n\n", id)
	fmt.Fprintf(md, "Met: %d, partial: %d, missing: %d.\n\n", r.Summary.Met, r.Summary.Partial, r.Summary.Missing)
	md.WriteString("| Requirement | Status | Evidence |\n| --- | --- | --- |\n")
	for _, it := range r.Requirements {
		var ev []string
		if it.Evidence != nil {
			ev = *it.Evidence
		}
		fmt.Fprintf(md, "| %s | %s | %s |\n", cell(it.Requirement), cell(it.Status), cell(strings.Join(ev, " / ")))
	}
}

// renderRisks appends a risk analysis: a table of its risks.
func renderRisks(md *strings.Builder, id string, r riskResult) {
	fmt.Fprintf(md, "\n## Risk analysis (job %s)\n\n", id)
	if len(r.Risks) == 0 {
		md.WriteString("No risks identified.\n")
		return
	}
	md.WriteString("| Category | Likelihood | Impact | Description | Mitigation |\n| --- | --- | --- | --- | --- |\n")
	for _, k := range r.Risks {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s |\n", cell(k.Category), cell(k.Likelihood), cell(k.Impact), cell(k.Description), cell(k.Mitigation))
	}
}

// renderReport appends a nested report: its body under its own title.
func renderReport(md *strings.Builder, id string, r reportResult) {
	body := strings.TrimSpace(r.Markdown)
	// Drop the nested report's own title line; its title becomes our heading.
	if first, rest, ok := strings.Cut(body, "\n"); ok && strings.HasPrefix(first, "# ") {
		body = strings.TrimSpace(rest)
	} else if strings.HasPrefix(body, "# ") && !ok {
		body = ""
	}
	fmt.Fprintf(md, "\n## %s (job %s)\n", oneLine(r.Title), id)
	if body != "" {
		md.WriteString("\n" + demoteHeadings(body, 1) + "\n")
	}
}

// oneLine collapses whitespace so that text fits in a heading.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cell makes text safe for one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(oneLine(s), `\`, `\\`)
	return strings.ReplaceAll(s, "|", `\|`)
}

var mdHeading = regexp.MustCompile(`^(#{1,6})(\s)`)

// demoteHeadings pushes the ATX headings of Markdown text down by n levels
// (at most level 6), outside fenced code blocks.
func demoteHeadings(text string, n int) string {
	lines := strings.Split(text, "\n")
	inFence := ""
	for i, l := range lines {
		if m := fence.FindStringSubmatch(l); m != nil {
			if inFence == "" {
				inFence = m[1]
			} else if m[1] == inFence {
				inFence = ""
			}
			continue
		}
		if inFence != "" {
			continue
		}
		if m := mdHeading.FindStringSubmatch(l); m != nil {
			lines[i] = strings.Repeat("#", min(len(m[1])+n, 6)) + l[len(m[1]):]
		}
	}
	return strings.Join(lines, "\n")
}
