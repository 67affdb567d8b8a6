package jobtype

import (
	"strings"

	"github.com/jobsd/jobsd/internal/prose"
)

// documentWords are words that every requirement and document uses: stop
// words for gap detection's evidence search, on top of prose's.
var documentWords = map[string]bool{
	"document": true, "documents": true, "ensure": true, "ensures": true,
	"provide": true, "provides": true, "include": true, "includes": true,
	"including": true, "describe": true, "describes": true,
}

// stem is a light English suffix stripper; it only needs to be consistent.
func stem(w string) string {
	for _, suf := range []string{"ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s"} {
		if len(w) > len(suf)+3 && strings.HasSuffix(w, suf) {
			w = strings.TrimSuffix(w, suf)
			if suf == "ies" || suf == "ied" {
				w += "y"
			}
			break
		}
	}
	return w
}

// contentStems returns the distinct stems of the content words of s, in order.
func contentStems(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range prose.Words(s) {
		if len(w) < 2 || prose.IsStopWord(w) || documentWords[w] {
			continue
		}
		st := stem(w)
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	return out
}

// sentences splits the analysed part of text (its first MaxAnalysedChars
// bytes) into at most MaxSentences sentences.
func sentences(text string) []string {
	return prose.Sentences(prose.CutBytes(text, MaxAnalysedChars), MaxSentences)
}
