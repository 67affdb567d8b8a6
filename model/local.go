package model

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
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

var previewStopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if then else of to in on at by for with from as into about
		over under is are was were be been being am do does did have has had this that these those it its
		they them their there here we our you your he she his her i me my not no so than too very can could
		would should will shall may might must just also such what which who whom whose when where why how
		all any each few more most other some only own same both up down out off again further once please
		summarise summarize describe explain list write give tell after before while during`) {
		m[w] = true
	}
	return m
}()

func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

func countWords(s string) int { return len(strings.Fields(s)) }

var sentenceEndRE = regexp.MustCompile(`[.!?]["')\]]?\s+|\n\s*\n|\n\s*[-*•]\s+`)

// splitSentences splits text after sentence punctuation, blank lines and list bullets.
func splitSentences(text string) []string {
	var out []string
	add := func(s string) {
		s = strings.TrimLeft(strings.Join(strings.Fields(s), " "), "-*• ")
		if s != "" {
			out = append(out, s)
		}
	}
	start := 0
	for _, loc := range sentenceEndRE.FindAllStringIndex(text, -1) {
		end := loc[0]
		if c := text[loc[0]]; c == '.' || c == '!' || c == '?' {
			end = loc[0] + len(strings.TrimRightFunc(text[loc[0]:loc[1]], unicode.IsSpace))
		}
		add(text[start:end])
		start = loc[1]
	}
	add(text[start:])
	return out
}

// extractivePreview picks the prompt's most informative sentences (by the
// document frequency of their content words) and its key terms.
func extractivePreview(prompt string, budget int) string {
	const maxSentences, maxInput = 3, 2000
	sentences := splitSentences(prompt)
	if len(sentences) > maxInput {
		sentences = sentences[:maxInput]
	}
	freq := map[string]int{}
	for _, s := range sentences {
		for _, w := range words(s) {
			if len(w) > 2 && !previewStopWords[w] {
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
		for _, w := range words(s) {
			if len(w) > 2 && !previewStopWords[w] && !seen[w] {
				seen[w] = true
				total += freq[w]
			}
		}
		if total > 0 {
			ranked = append(ranked, scored{i, float64(total) / (1 + float64(len(words(s)))/12)})
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
		s = truncateRunes(s, 400)
		if sb.Len()+len(s) > limit {
			break
		}
		sb.WriteString("- " + s + "\n")
	}
	sb.WriteString("Key terms: " + strings.Join(terms, ", ") + ".")
	return sb.String()
}

// truncateRunes shortens s to at most n runes, ending with "…" when cut.
func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
