package jobtype

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cutBytes shortens s to at most n bytes without splitting a rune.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if then else of to in on at by for with from as into onto about
		over under is are was were be been being am do does did done have has had having this that these those
		it its they them their theirs there here we us our ours you your yours he him his she her hers i me my
		not no nor so than too very can could would should will shall may might must just also such what which
		who whom whose when where why how all any each every few more most other some only own same both up
		down out off again further once per via within without upon among across after before while during
		shall etc e.g i.e document documents ensure ensures provide provides include includes including
		describe describes must should`) {
		m[w] = true
	}
	return m
}()

// tokens splits text into lower-case words.
func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
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
	for _, w := range tokens(s) {
		if len(w) < 2 || stopWords[w] {
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

var sentenceEnd = regexp.MustCompile(`[.!?]["')\]]?\s+|\n\s*\n|\n\s*(?:[-*•]|\d+[.)])\s+|\n#+\s+|\n\|`)

// sentences splits text into at most MaxSentences whitespace-normalised
// sentences (also at blank lines, list items and headings).
func sentences(text string) []string {
	text = cutBytes(text, MaxAnalysedChars)
	var out []string
	add := func(s string) {
		s = strings.TrimLeft(strings.Join(strings.Fields(s), " "), "#-*•| ")
		if s != "" && len(out) < MaxSentences {
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
		if len(out) >= MaxSentences {
			return out
		}
	}
	add(text[start:])
	return out
}

// quote shortens s to at most n runes, ending with "…" when cut.
func quote(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	cut := string(r[:n-1])
	if i := strings.LastIndexByte(cut, ' '); i > len(cut)/2 {
		cut = cut[:i]
	}
	return strings.TrimSpace(cut) + "…"
}
