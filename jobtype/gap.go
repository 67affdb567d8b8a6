package jobtype

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/prose"
	"github.com/jobsd/jobsd/model"
)

// Thresholds of the local gap detection: the share of a requirement's
// content words found in its evidence.
const (
	metThreshold     = 0.7
	partialThreshold = 0.3
	maxEvidence      = 3
	maxQuoteRunes    = 300
	maxModelDocChars = 100000
)

type gapItem struct {
	Requirement string    `json:"requirement"`
	Status      string    `json:"status"`
	Evidence    *[]string `json:"evidence"`
}

type gapSummary struct {
	Met     int `json:"met"`
	Partial int `json:"partial"`
	Missing int `json:"missing"`
}

// gapResult is GapDetectionResult.
type gapResult struct {
	Requirements []gapItem  `json:"requirements"`
	Summary      gapSummary `json:"summary"`
}

func handleGapDetection(ctx context.Context, env Env, input json.RawMessage) (json.RawMessage, error) {
	var in gen.GapDetectionInput
	if err := decodeInput(input, &in); err != nil {
		return nil, err
	}
	if len(in.Requirements) == 0 {
		return nil, invalidInput("requirements", "must list at least one requirement")
	}
	if len(in.Requirements) > 100 {
		return nil, invalidInput("requirements", "must list at most 100 requirements")
	}
	for _, r := range in.Requirements {
		if strings.TrimSpace(r) == "" {
			return nil, invalidInput("requirements", "contains an empty requirement")
		}
	}
	text, err := documentText(ctx, env, in.Text, in.DocumentJobId)
	if err != nil {
		return nil, err
	}
	var res gapResult
	if model.IsLocal(env.Model) {
		invalid, err := model.Simulate(ctx, text+"\n"+strings.Join(in.Requirements, "\n"))
		if err != nil {
			return nil, err
		}
		if invalid {
			return nil, invalidOutput("simulated invalid output")
		}
		res = localGaps(text, in.Requirements)
	} else {
		res, err = modelGaps(ctx, env, text, in.Requirements)
		if err != nil {
			return nil, err
		}
	}
	return marshalResult(res, "text")
}

func (r *gapResult) summarise() {
	r.Summary = gapSummary{}
	for _, it := range r.Requirements {
		switch it.Status {
		case "met":
			r.Summary.Met++
		case "partial":
			r.Summary.Partial++
		default:
			r.Summary.Missing++
		}
	}
}

// localGaps searches the text's sentences for each requirement's content words.
func localGaps(text string, reqs []string) gapResult {
	sents := sentences(text)
	stems := make([]map[string]bool, len(sents))
	for i, s := range sents {
		stems[i] = map[string]bool{}
		for _, st := range contentStems(s) {
			stems[i][st] = true
		}
	}
	res := gapResult{Requirements: make([]gapItem, 0, len(reqs))}
	for _, req := range reqs {
		want := contentStems(req)
		if len(want) == 0 {
			for _, w := range prose.Words(req) {
				want = append(want, stem(w))
			}
		}
		type hit struct{ i, n int }
		var hits []hit
		for i := range sents {
			n := 0
			for _, w := range want {
				if stems[i][w] {
					n++
				}
			}
			if n > 0 {
				hits = append(hits, hit{i, n})
			}
		}
		sort.SliceStable(hits, func(a, b int) bool { return hits[a].n > hits[b].n })
		if len(hits) > maxEvidence {
			hits = hits[:maxEvidence]
		}
		covered := map[string]bool{}
		evidence := []string{}
		for _, h := range hits {
			evidence = append(evidence, prose.Truncate(sents[h.i], maxQuoteRunes))
			for _, w := range want {
				if stems[h.i][w] {
					covered[w] = true
				}
			}
		}
		share := 0.0
		if len(want) > 0 {
			share = float64(len(covered)) / float64(len(want))
		}
		status := "missing"
		switch {
		case share >= metThreshold:
			status = "met"
		case share >= partialThreshold:
			status = "partial"
		default:
			evidence = []string{}
		}
		res.Requirements = append(res.Requirements, gapItem{Requirement: req, Status: status, Evidence: &evidence})
	}
	res.summarise()
	return res
}

const gapSystem = `You check a document against requirements. For each requirement decide whether the document meets it ("met"), meets it in part ("partial") or not at all ("missing"), and quote up to 3 short sentences of the document as evidence (none when missing).
Answer with this JSON shape: {"requirements":[{"requirement":"<the requirement, verbatim>","status":"met|partial|missing","evidence":["<quote>"]}]}. List every requirement exactly once, in the given order.`

// modelGaps asks the model and validates its answer strictly.
func modelGaps(ctx context.Context, env Env, text string, reqs []string) (gapResult, error) {
	reqJSON, _ := json.Marshal(reqs)
	prompt := fmt.Sprintf("Requirements (JSON array):\n%s\n\nDocument:\n<<<\n%s\n>>>", reqJSON, prose.CutBytes(text, maxModelDocChars))
	var out struct {
		Requirements []gapItem      `json:"requirements"`
		Summary      map[string]any `json:"summary,omitempty"`
	}
	if err := askJSON(ctx, env, gapSystem, prompt, &out); err != nil {
		return gapResult{}, err
	}
	byReq := map[string]gapItem{}
	for _, it := range out.Requirements {
		key := strings.TrimSpace(it.Requirement)
		if _, dup := byReq[key]; dup {
			return gapResult{}, invalidOutput("a requirement is listed twice")
		}
		switch it.Status {
		case "met", "partial", "missing":
		default:
			return gapResult{}, invalidOutput(fmt.Sprintf("status %q is not met, partial or missing", prose.Truncate(it.Status, 40)))
		}
		if it.Evidence == nil {
			return gapResult{}, invalidOutput("a requirement has no evidence list")
		}
		byReq[key] = it
	}
	if len(byReq) != len(out.Requirements) || len(out.Requirements) != len(uniqueTrimmed(reqs)) {
		return gapResult{}, invalidOutput("the requirements listed differ from the input's")
	}
	res := gapResult{Requirements: make([]gapItem, 0, len(reqs))}
	for _, r := range reqs {
		it, ok := byReq[strings.TrimSpace(r)]
		if !ok {
			return gapResult{}, invalidOutput("a requirement is missing from the answer")
		}
		ev := []string{}
		for _, e := range *it.Evidence {
			if e = strings.TrimSpace(e); e != "" && len(ev) < maxEvidence {
				ev = append(ev, prose.Truncate(e, maxQuoteRunes))
			}
		}
		res.Requirements = append(res.Requirements, gapItem{Requirement: r, Status: it.Status, Evidence: &ev})
	}
	res.summarise()
	return res, nil
}

func uniqueTrimmed(ss []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range ss {
		m[strings.TrimSpace(s)] = true
	}
	return m
}
