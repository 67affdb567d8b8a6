package jobtype

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"strings"
	"testing"
)

// The hostile corpus in testdata/hostile is generated here, so what each
// file is stays readable; `go test -run TestHostileCorpus -update` rewrites
// it, and TestHostileCorpus fails when a committed file and its generator
// disagree. Each file attacks one parser weakness; see RELIABILITY.md,
// "Hostile documents", for what each one does.
var hostileCorpus = []struct {
	name string
	gen  func(t testing.TB) []byte
	// large files (over 64 KiB) are generated when the tests run rather
	// than kept in testdata/hostile.
	large bool
}{
	{name: "pdf-self-referencing-page-tree.pdf", gen: func(testing.TB) []byte { return selfReferencingPDF() }},
	{name: "pdf-deep-nesting.pdf", gen: func(testing.TB) []byte { return deepNestingPDF(100000) }, large: true},
	{name: "pdf-huge-stream-length.pdf", gen: func(testing.TB) []byte { return hugeStreamLengthPDF() }},
	{name: "pdf-flate-bomb.pdf", gen: flateBombPDF, large: true},
	{name: "docx-zip-bomb.docx", gen: func(t testing.TB) []byte { return zipBombDOCX(t, 1<<30, 0) }, large: true},
	{name: "docx-zip-bomb-lying-size.docx", gen: func(t testing.TB) []byte { return zipBombDOCX(t, 32<<20, 1<<20) }},
	{name: "docx-zip-bomb-under-cap.docx", gen: func(t testing.TB) []byte { return zipBombDOCX(t, maxDocxXMLBytes-4096, 0) }},
	{name: "docx-billion-laughs.docx", gen: billionLaughsDOCX},
	{name: "docx-invalid-utf8.docx", gen: func(t testing.TB) []byte {
		return rawDOCX(t, []byte(docxHead+"<w:p><w:r><w:t>caf\xe9 \xff\xfe na\xefve</w:t></w:r></w:p>"+docxTail))
	}},
	{name: "text-invalid-utf8.txt", gen: func(testing.TB) []byte { return []byte("Quarterly report\n\ncaf\xe9 \xff\xfe na\xefve\n") }},
}

// pdfFile assembles numbered objects into a PDF with a correct xref table,
// so the parsers get past the file structure to the attack.
func pdfFile(objects ...string) []byte {
	var buf bytes.Buffer
	buf.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objects))
	for i, o := range objects {
		offsets[i] = buf.Len()
		fmt.Fprintf(&buf, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := buf.Len()
	fmt.Fprintf(&buf, "xref\n0 %d\n0000000000 65535 f \n", len(objects)+1)
	for _, off := range offsets {
		fmt.Fprintf(&buf, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&buf, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objects)+1, xref)
	return buf.Bytes()
}

// selfReferencingPDF: the page tree's root lists itself as its only kid;
// github.com/ledongthuc/pdf's Page descends into it for ever.
func selfReferencingPDF() []byte {
	return pdfFile(
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [2 0 R] /Count 1 >>",
	)
}

// deepNestingPDF: a page whose dictionary holds arrays nested depth deep
// and a catalog entry of dictionaries nested depth deep: a recursive
// descent parser uses stack per level.
func deepNestingPDF(depth int) []byte {
	arrays := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	dicts := strings.Repeat("<< /A ", depth) + "0" + strings.Repeat(" >>", depth)
	return pdfFile(
		"<< /Type /Catalog /Pages 2 0 R /Deep "+dicts+" >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Deep "+arrays+" >>",
		"<< /Length 0 >>\nstream\n\nendstream",
	)
}

// hugeStreamLengthPDF: a content stream that declares 1 TB: a parser that
// trusts /Length allocates or reads that much.
func hugeStreamLengthPDF() []byte {
	return pdfFile(
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
		"<< /Length 1000000000000 >>\nstream\nBT /F1 12 Tf 72 720 Td (Hello) Tj ET\nendstream",
	)
}

const (
	docxHead = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>`
	docxTail = `<w:sectPr/></w:body></w:document>`
)

// rawDOCX zips a word/document.xml as it is (Deflate).
func rawDOCX(t testing.TB, documentXML []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("word/document.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(documentXML); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombChunk is the unit a bomb repeats: one deflate block that encodes
// this many bytes of a fill pattern, from a window of the same pattern.
const bombChunk = 1 << 20

// deflateBomb returns a raw deflate stream of head, n+1 chunks of fill
// (repeated to bombChunk bytes) and tail, at the format's best ratio (about
// 1:1000) without compressing it all: once the window holds the pattern, the
// block that encodes a chunk can be repeated. It also returns one chunk, for
// the caller's checksum.
func deflateBomb(t testing.TB, head, fill, tail []byte, n int64) (stream, chunk []byte) {
	chunk = bytes.Repeat(fill, bombChunk/len(fill))
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	step := func(p []byte) []byte {
		start := buf.Len()
		fw.Write(p)
		if err := fw.Flush(); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(buf.Bytes()[start:])
	}
	first := step(append(bytes.Clone(head), chunk...))
	repeat := step(chunk)
	start := buf.Len()
	fw.Write(tail)
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	last := bytes.Clone(buf.Bytes()[start:])
	return append(append(first, bytes.Repeat(repeat, int(n))...), last...), chunk
}

// zipBombDOCX: a word/document.xml of one paragraph whose text is about
// size bytes of "a". declared, when not 0, is the size the zip's directory
// claims instead of the real one.
func zipBombDOCX(t testing.TB, size, declared int64) []byte {
	head := []byte(docxHead + "<w:p><w:r><w:t>")
	tail := []byte("</w:t></w:r></w:p>" + docxTail)
	n := max(size/bombChunk-1, 0)
	stream, chunk := deflateBomb(t, head, []byte("a"), tail, n)
	crc := crc32.ChecksumIEEE(head)
	for range n + 1 {
		crc = crc32.Update(crc, crc32.IEEETable, chunk)
	}
	crc = crc32.Update(crc, crc32.IEEETable, tail)
	real := int64(len(head)) + (n+1)*bombChunk + int64(len(tail))
	if declared == 0 {
		declared = real
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "word/document.xml", Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(len(stream)), UncompressedSize64: uint64(declared),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(stream)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// flateBombPDF: one page whose FlateDecode content stream inflates to 512 MiB
// of text-showing operators; the text extractor collects it all.
func flateBombPDF(t testing.TB) []byte {
	line := []byte("(" + strings.Repeat("a", 58) + ") Tj\n") // 64 bytes
	head, tail := []byte("BT /F1 12 Tf 72 720 Td\n"), []byte("ET\n")
	n := int64(512<<20)/bombChunk - 1
	stream, chunk := deflateBomb(t, head, line, tail, n)
	// Adler-32 of 512 MiB by combining the chunk's (hashing it all takes
	// seconds under -race).
	adler, one := adler32.Checksum(head), adler32.Checksum(chunk)
	for range n + 1 {
		adler = adler32Combine(adler, one, bombChunk)
	}
	adler = adler32Combine(adler, adler32.Checksum(tail), int64(len(tail)))
	// zlib: header (deflate, 32 KiB window, best compression), stream, Adler-32.
	z := append([]byte{0x78, 0xda}, stream...)
	z = binary.BigEndian.AppendUint32(z, adler)
	return pdfFile(
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
		fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream", len(z), z),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
	)
}

// adler32Combine is the Adler-32 of A followed by B, from A's and B's
// checksums and B's length (zlib's adler32_combine).
func adler32Combine(a, b uint32, lenB int64) uint32 {
	const mod = 65521
	rem := uint64(lenB % mod)
	s1 := uint64(a & 0xffff)
	s2 := rem * s1 % mod
	s1 += uint64(b&0xffff) + mod - 1
	s2 += uint64(a>>16) + uint64(b>>16) + mod - rem
	s1 %= mod
	s2 %= mod
	return uint32(s2<<16 | s1)
}

// billionLaughsDOCX: nine levels of entities, each ten of the one below
// (10^9 "lol"s); a parser that expands entities needs gigabytes.
func billionLaughsDOCX(t testing.TB) []byte {
	var dtd strings.Builder
	dtd.WriteString(`<!DOCTYPE w:document [` + "\n" + `<!ENTITY lol0 "lol">` + "\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&dtd, `<!ENTITY lol%d "%s">`+"\n", i, strings.Repeat(fmt.Sprintf("&lol%d;", i-1), 10))
	}
	dtd.WriteString("]>\n")
	doc := strings.Replace(docxHead, "\n", "\n"+dtd.String(), 1) + "<w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>" + docxTail
	return rawDOCX(t, []byte(doc))
}
