package jobtype

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jobsd/jobsd/gen"
	"github.com/ledongthuc/pdf"
)

// Content types PARSE_DOCUMENT reads.
const (
	ContentTypeText     = "text/plain"
	ContentTypeMarkdown = "text/markdown"
	ContentTypePDF      = "application/pdf"
	ContentTypeDOCX     = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
)

// maxDocxXMLBytes caps the decompressed word/document.xml (zip bombs).
const maxDocxXMLBytes = 64 << 20

// maxPDFPages caps the pages whose text is extracted.
const maxPDFPages = 2000

type section struct {
	Heading string `json:"heading"`
	Level   int    `json:"level"`
	Text    string `json:"text"`
}

type parseCounts struct {
	Sections   int  `json:"sections"`
	Words      int  `json:"words"`
	Characters int  `json:"characters"`
	Pages      *int `json:"pages,omitempty"`
}

// parseResult is ParseDocumentResult.
type parseResult struct {
	ContentType string      `json:"contentType"`
	Sections    []section   `json:"sections"`
	Counts      parseCounts `json:"counts"`
}

// plainText joins the sections' headings and texts.
func (r parseResult) plainText() string {
	var sb strings.Builder
	for _, s := range r.Sections {
		if s.Heading != "" {
			sb.WriteString(s.Heading + "\n\n")
		}
		if s.Text != "" {
			sb.WriteString(s.Text + "\n\n")
		}
	}
	return sb.String()
}

// sectionBuilder collects paragraphs under headings.
type sectionBuilder struct {
	out  []section
	cur  section
	body []string
	open bool
}

func (b *sectionBuilder) heading(text string, level int) {
	b.flush()
	b.cur, b.open = section{Heading: strings.Join(strings.Fields(text), " "), Level: level}, true
}

func (b *sectionBuilder) paragraph(text string) {
	text = strings.TrimRightFunc(text, unicode.IsSpace)
	text = strings.TrimLeft(text, "\n")
	if strings.TrimSpace(text) == "" {
		return
	}
	b.open = true
	b.body = append(b.body, text)
}

func (b *sectionBuilder) flush() {
	if b.open {
		b.cur.Text = strings.Join(b.body, "\n\n")
		b.out = append(b.out, b.cur)
	}
	b.cur, b.body, b.open = section{}, nil, false
}

func (b *sectionBuilder) result(contentType string, pages *int) parseResult {
	b.flush()
	r := parseResult{ContentType: contentType, Sections: b.out}
	if r.Sections == nil {
		r.Sections = []section{}
	}
	for _, s := range r.Sections {
		r.Counts.Words += len(strings.Fields(s.Heading)) + len(strings.Fields(s.Text))
		r.Counts.Characters += utf8.RuneCountInString(s.Heading) + utf8.RuneCountInString(s.Text)
	}
	r.Counts.Sections = len(r.Sections)
	r.Counts.Pages = pages
	return r
}

func notReadable(kind string) error {
	return invalidInput("document", fmt.Sprintf("is not a readable %s file", kind))
}

func handleParseDocument(ctx context.Context, env Env, input json.RawMessage) (json.RawMessage, error) {
	var in gen.ParseDocumentInput
	if err := decodeInput(input, &in); err != nil {
		return nil, err
	}
	if len(in.Document) == 0 {
		return nil, invalidInput("document", "is empty")
	}
	var (
		res parseResult
		err error
	)
	switch ct := string(in.ContentType); ct {
	case ContentTypeText:
		res, err = parsePlain(ctx, in.Document)
	case ContentTypeMarkdown:
		res, err = parseMarkdown(ctx, in.Document)
	case ContentTypeDOCX, ContentTypePDF:
		// Third-party and decompression code over untrusted bytes: in a
		// child process that is killed at its limits (see sandbox.go).
		return env.parser().parse(ctx, ct, in.Document)
	default:
		return nil, invalidInput("contentType", fmt.Sprintf("%q is not supported", ct))
	}
	if err != nil {
		return nil, err
	}
	return marshalResult(res, "document")
}

// decodeText checks that doc is UTF-8 text and normalises line ends.
func decodeText(doc []byte, kind string) (string, error) {
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(doc) || bytes.IndexByte(doc, 0) >= 0 {
		return "", notReadable(kind)
	}
	s := strings.ReplaceAll(string(doc), "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n"), nil
}

// checkEvery is how many lines or paragraphs the in-process parsers handle
// between looks at their context: 5 MiB of text takes 0.1-0.2 s (about 10 s
// with -race), so a cancelled job should not wait for all of it.
const checkEvery = 4096

func parsePlain(ctx context.Context, doc []byte) (parseResult, error) {
	text, err := decodeText(doc, "text")
	if err != nil {
		return parseResult{}, err
	}
	return plainSections(ctx, text, ContentTypeText, nil)
}

var blankLines = regexp.MustCompile(`\n[ \t]*\n+`)

// plainSections splits text into paragraphs; a short, title-like
// single-line paragraph followed by more text becomes a level-1 heading.
// It stops with ctx's error when ctx ends.
func plainSections(ctx context.Context, text, contentType string, pages *int) (parseResult, error) {
	var b sectionBuilder
	paras := blankLines.Split(strings.Trim(text, "\n"), -1)
	for i, p := range paras {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return parseResult{}, ctx.Err()
		}
		if i+1 < len(paras) && looksLikeHeading(p) {
			b.heading(strings.TrimSpace(p), 1)
			continue
		}
		b.paragraph(p)
	}
	return b.result(contentType, pages), nil
}

var numberedHeading = regexp.MustCompile(`^(\d+(\.\d+)*\.?|[IVX]+\.)\s+\p{Lu}`)

func looksLikeHeading(p string) bool {
	p = strings.TrimSpace(p)
	if p == "" || strings.Contains(p, "\n") || utf8.RuneCountInString(p) > 80 {
		return false
	}
	if strings.ContainsAny(p[len(p)-1:], ".,;!?") {
		return false
	}
	words := strings.Fields(p)
	if len(words) > 10 {
		return false
	}
	if numberedHeading.MatchString(p) {
		return true
	}
	first, _ := utf8.DecodeRuneInString(p)
	if !unicode.IsUpper(first) {
		return false
	}
	if strings.ToUpper(p) == p {
		return true
	}
	capital := 0
	for _, w := range words {
		r, _ := utf8.DecodeRuneInString(w)
		if unicode.IsUpper(r) || unicode.IsDigit(r) {
			capital++
		}
	}
	return len(words) <= 3 || capital*2 > len(words)
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	fence      = regexp.MustCompile("^ {0,3}(```|~~~)")
)

func parseMarkdown(ctx context.Context, doc []byte) (parseResult, error) {
	text, err := decodeText(doc, "Markdown")
	if err != nil {
		return parseResult{}, err
	}
	var b sectionBuilder
	var para []string
	inFence := ""
	flushPara := func() {
		b.paragraph(strings.Join(para, "\n"))
		para = para[:0]
	}
	for i, line := range strings.Split(text, "\n") {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return parseResult{}, ctx.Err()
		}
		if m := fence.FindStringSubmatch(line); m != nil {
			if inFence == "" {
				inFence = m[1]
			} else if m[1] == inFence {
				inFence = ""
			}
			para = append(para, line)
			continue
		}
		if inFence == "" {
			if m := atxHeading.FindStringSubmatch(line); m != nil {
				flushPara()
				b.heading(m[2], len(m[1]))
				continue
			}
			if strings.TrimSpace(line) == "" {
				flushPara()
				continue
			}
		}
		para = append(para, line)
	}
	flushPara()
	return b.result(ContentTypeMarkdown, nil), nil
}

var headingStyle = regexp.MustCompile(`(?i)^heading\s*([1-9])$`)

func parseDOCX(doc []byte) (parseResult, error) {
	rc, err := openDocxBody(doc)
	if err != nil {
		return parseResult{}, err
	}
	defer func() { _ = rc.Close() }() // a reader: its Close loses nothing
	dec := xml.NewDecoder(io.LimitReader(rc, maxDocxXMLBytes))
	var (
		b                 sectionBuilder
		text              strings.Builder
		style, outline    string
		inPara, inText    bool
		sawDocumentMarkup bool
		textBytes         int
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return parseResult{}, notReadable("DOCX")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "document", "body":
				sawDocumentMarkup = true
			case "p":
				inPara, style, outline = true, "", ""
				text.Reset()
			case "pStyle":
				style = attr(t, "val")
			case "outlineLvl":
				outline = attr(t, "val")
			case "t":
				inText = true
			case "tab":
				if inPara {
					text.WriteByte('\t')
				}
			case "br", "cr":
				if inPara {
					text.WriteByte('\n')
				}
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inText = false
			case "p":
				if inPara {
					if level := docxHeadingLevel(style, outline); level > 0 && strings.TrimSpace(text.String()) != "" {
						b.heading(text.String(), level)
					} else {
						b.paragraph(text.String())
					}
				}
				inPara = false
			}
		case xml.CharData:
			if inText && inPara {
				text.Write(t)
				// Stop at what can never fit in a result rather than
				// collect up to 64 MiB of text to find out.
				if textBytes += len(t); textBytes > MaxResultBytes {
					return parseResult{}, tooLarge("document")
				}
			}
		}
	}
	if !sawDocumentMarkup {
		return parseResult{}, notReadable("DOCX")
	}
	return b.result(ContentTypeDOCX, nil), nil
}

// openDocxBody opens a DOCX file's main part, word/document.xml, if it is
// no larger than maxDocxXMLBytes.
func openDocxBody(doc []byte) (io.ReadCloser, error) {
	zr, err := zip.NewReader(bytes.NewReader(doc), int64(len(doc)))
	if err != nil {
		return nil, notReadable("DOCX")
	}
	var body *zip.File
	for _, f := range zr.File {
		if f.Name == "word/document.xml" {
			body = f
		}
	}
	if body == nil || body.UncompressedSize64 > maxDocxXMLBytes {
		return nil, notReadable("DOCX")
	}
	rc, err := body.Open()
	if err != nil {
		return nil, notReadable("DOCX")
	}
	return rc, nil
}

func attr(e xml.StartElement, local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// docxHeadingLevel maps a paragraph style (Title, Heading1..6) or outline
// level to a heading level, 0 for body text.
func docxHeadingLevel(style, outline string) int {
	if strings.EqualFold(style, "Title") {
		return 1
	}
	if m := headingStyle.FindStringSubmatch(style); m != nil {
		return min(int(m[1][0]-'0'), 6)
	}
	if n, err := strconv.Atoi(outline); err == nil && n >= 0 && n < 6 {
		return n + 1
	}
	return 0
}

func parsePDF(doc []byte) (res parseResult, err error) {
	if !bytes.HasPrefix(bytes.TrimLeft(doc[:min(len(doc), 1024)], "\x00\t\r\n "), []byte("%PDF-")) {
		return parseResult{}, notReadable("PDF")
	}
	// The PDF library panics on some malformed files.
	defer func() {
		if r := recover(); r != nil {
			res, err = parseResult{}, notReadable("PDF")
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(doc), int64(len(doc)))
	if err != nil {
		return parseResult{}, notReadable("PDF")
	}
	pages := r.NumPage()
	if pages <= 0 {
		return parseResult{}, notReadable("PDF")
	}
	var sb strings.Builder
	for i := 1; i <= pages && i <= maxPDFPages; i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		text, err := p.GetPlainText(nil)
		if err != nil {
			return parseResult{}, notReadable("PDF")
		}
		sb.WriteString(strings.TrimSpace(text))
		sb.WriteString("\n\n")
		if sb.Len() > MaxResultBytes {
			break
		}
	}
	text := strings.ToValidUTF8(sb.String(), "")
	// In the child process, which is killed rather than cancelled.
	return plainSections(context.Background(), text, ContentTypePDF, &pages)
}
