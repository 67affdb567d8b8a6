// Package prose holds the small English text toolkit shared by the job types
// (jobtype) and the local model provider (model): a sentence splitter that
// knows Markdown's list items, headings and table rows, a word splitter, one
// stop-word list, and truncation that never splits a character.
//
// It is lexical and deterministic on purpose: its users are the network-free
// paths (the local provider, gap detection's evidence search), whose outputs
// tests compare.
package prose

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// sentenceEnd matches where a sentence ends: sentence punctuation (with an
// optional closing quote or bracket) before whitespace, a blank line, a line
// that starts a list item (bullet or number), a heading or a table row.
var sentenceEnd = regexp.MustCompile(`[.!?]["')\]]?\s+|\n\s*\n|\n\s*(?:[-*•]|\d+[.)])\s+|\n#+\s+|\n\|`)

// Sentences splits text into whitespace-normalised sentences, at most max of
// them (max <= 0: all). The punctuation stays with its sentence; list bullets,
// heading marks and table bars at a sentence's start are dropped.
func Sentences(text string, max int) []string {
	var out []string
	full := func() bool { return max > 0 && len(out) >= max }
	add := func(s string) {
		s = strings.TrimLeft(strings.Join(strings.Fields(s), " "), "#-*•| ")
		if s != "" && !full() {
			out = append(out, s)
		}
	}
	start := 0
	for _, loc := range sentenceEnd.FindAllStringIndex(text, -1) {
		end := loc[0]
		if c := text[loc[0]]; c == '.' || c == '!' || c == '?' {
			end = loc[0] + len(strings.TrimRightFunc(text[loc[0]:loc[1]], unicode.IsSpace))
		}
		add(text[start:end])
		start = loc[1]
		if full() {
			return out
		}
	}
	add(text[start:])
	return out
}

// Words splits s into lower-case words: runs of letters and digits. An
// apostrophe separates ("farmer's" is "farmer" and "s"), so a possessive
// matches its noun.
func Words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// IsStopWord reports whether w, a lower-case word, is an English function
// word (an article, pronoun, auxiliary, conjunction, common preposition or
// adverb) that says nothing about a text's subject.
func IsStopWord(w string) bool { return stopWords[w] }

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if then else of to in on at by for with from as into onto
		about over under is are was were be been being am do does did done have has had having this that these
		those it its they them their theirs there here we us our ours you your yours he him his she her hers i
		me my not no nor so than too very can could would should will shall may might must just also such what
		which who whom whose when where why how all any each every few more most other some only own same both
		up down out off again further once per via within without upon among across after before while during
		etc`) {
		m[w] = true
	}
	return m
}()

// Truncate shortens s to at most n runes, ending with "…" when cut; the cut
// goes back to the last space when one lies in the second half, so a word is
// not split.
func Truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	cut := string(r[:max(n-1, 0)])
	if i := strings.LastIndexByte(cut, ' '); i > len(cut)/2 {
		cut = cut[:i]
	}
	return strings.TrimSpace(cut) + "…"
}

// CutBytes shortens s to at most n bytes without splitting a UTF-8 sequence.
func CutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
