package model

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jobsd/jobsd/internal/prose"
)

// MaxSimulatedDelay caps the [[simulate:slow=...]] marker.
const MaxSimulatedDelay = 60 * time.Second

type local struct{}

// NewLocal returns the network-free, deterministic provider. For every
// request it first applies the prompt's markers (see Simulate and the
// package's Markers section); it then answers with an extractive preview of
// the prompt: its most informative sentences and key terms, labelled as a
// local preview. It answers JSON requests the same way (not with JSON):
// callers that need structured output must not rely on it, see IsLocal.
func NewLocal() Provider { return local{} }

// Name implements Provider.
func (local) Name() string { return ProviderLocal }

// Converse implements Provider.
func (l local) Converse(ctx context.Context, req Request) (Response, error) {
	modelID := req.ModelID
	if modelID == "" {
		modelID = ProviderLocal
	}
	return traced(ctx, providerLocal, modelID, func(ctx context.Context) (Response, error) {
		return l.converse(ctx, req)
	})
}

func (local) converse(ctx context.Context, req Request) (Response, error) {
	invalid, err := Simulate(ctx, req.Prompt)
	if err != nil {
		return Response{}, err
	}
	if invalid {
		return Response{Text: "", InputTokens: countWords(req.Prompt)}, nil
	}
	text := extractivePreview(StripMarkers(req.Prompt), maxTokens(req.MaxTokens))
	return Response{Text: text, InputTokens: countWords(req.Prompt), OutputTokens: countWords(text)}, nil
}

var markerRE = regexp.MustCompile(`\[\[simulate:([a-z-]+)(?:=([^\]\s]{1,20}))?\]\]`)

// StripMarkers removes every [[simulate:...]] marker from text.
func StripMarkers(text string) string { return markerRE.ReplaceAllString(text, "") }

// Simulate applies the [[simulate:...]] markers found in text (see the
// package's Markers section), using the attempt number from AttemptFrom(ctx).
// It returns a non-nil *Error when a marker says this attempt fails, and
// invalidOutput true when a marker asks for output the caller must reject.
// Text without markers returns (false, nil) at once. The local provider calls
// it on its prompt; package jobtype calls it on analysed text when the local
// provider is configured.
func Simulate(ctx context.Context, text string) (invalidOutput bool, err error) {
	if !strings.Contains(text, "[[simulate:") {
		return false, nil
	}
	attempt := AttemptFrom(ctx)
	throttle := &Error{Provider: ProviderBedrock, Code: "ThrottlingException", Message: "Rate exceeded", Retryable: true}
	for _, m := range markerRE.FindAllStringSubmatch(text, -1) {
		switch m[1] {
		case "crash", "crash-once":
			if crashMarkers.Load() && (m[1] == "crash" || attempt <= 1) {
				d, _ := time.ParseDuration(m[2]) // none or invalid: at once
				crash(min(d, MaxSimulatedDelay))
			}
		case "slow":
			d, perr := time.ParseDuration(m[2])
			if perr != nil || d <= 0 {
				continue
			}
			if d > MaxSimulatedDelay {
				d = MaxSimulatedDelay
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return false, transportError(ProviderLocal, ctx, ctx.Err())
			case <-t.C:
			}
		}
	}
	for _, m := range markerRE.FindAllStringSubmatch(text, -1) {
		switch m[1] {
		case "throttle":
			return false, throttle
		case "throttle-once":
			if attempt <= 1 {
				return false, throttle
			}
		case "throttle-twice":
			if attempt <= 2 {
				return false, throttle
			}
		case "permanent":
			return false, &Error{Provider: ProviderLocal, Code: "ValidationException", Message: "simulated permanent failure", Retryable: false}
		case "invalid-output":
			invalidOutput = true
		}
	}
	return invalidOutput, nil
}

// promptWords are the verbs and courtesies of an instruction ("Please
// summarise..."): stop words for the preview, on top of prose's.
var promptWords = map[string]bool{
	"please": true, "summarise": true, "summarize": true, "describe": true, "explain": true,
	"list": true, "write": true, "give": true, "tell": true,
}

// contentWord reports whether w, a lower-case word, counts towards the
// preview's sentence scores and key terms.
func contentWord(w string) bool {
	return len(w) > 2 && !prose.IsStopWord(w) && !promptWords[w]
}

func countWords(s string) int { return len(strings.Fields(s)) }

// extractivePreview picks the prompt's most informative sentences (by the
// document frequency of their content words) and its key terms.
func extractivePreview(prompt string, budget int) string {
	const maxSentences, maxInput = 3, 2000
	sentences := prose.Sentences(prompt, maxInput)
	freq := map[string]int{}
	for _, s := range sentences {
		for _, w := range prose.Words(s) {
			if contentWord(w) {
				freq[w]++
			}
		}
	}
	if len(freq) == 0 {
		return "Local preview (no AI model was called): the prompt has no content words to summarise."
	}
	type scored struct {
		i     int
		score float64
	}
	var ranked []scored
	for i, s := range sentences {
		seen := map[string]bool{}
		total := 0
		ws := prose.Words(s)
		for _, w := range ws {
			if contentWord(w) && !seen[w] {
				seen[w] = true
				total += freq[w]
			}
		}
		if total > 0 {
			ranked = append(ranked, scored{i, float64(total) / (1 + float64(len(ws))/12)})
		}
	}
	sort.SliceStable(ranked, func(a, b int) bool { return ranked[a].score > ranked[b].score })
	if len(ranked) > maxSentences {
		ranked = ranked[:maxSentences]
	}
	sort.Slice(ranked, func(a, b int) bool { return ranked[a].i < ranked[b].i })

	terms := make([]string, 0, len(freq))
	for w := range freq {
		terms = append(terms, w)
	}
	sort.Slice(terms, func(a, b int) bool {
		if freq[terms[a]] != freq[terms[b]] {
			return freq[terms[a]] > freq[terms[b]]
		}
		return terms[a] < terms[b]
	})
	if len(terms) > 8 {
		terms = terms[:8]
	}

	var sb strings.Builder
	sb.WriteString("Local preview (extractive; no AI model was called).\nKey points:\n")
	limit := budget * 4 // roughly four characters a token
	for _, r := range ranked {
		s := sentences[r.i]
		s = prose.Truncate(s, 400)
		if sb.Len()+len(s) > limit {
			break
		}
		sb.WriteString("- " + s + "\n")
	}
	sb.WriteString("Key terms: " + strings.Join(terms, ", ") + ".")
	return sb.String()
}
