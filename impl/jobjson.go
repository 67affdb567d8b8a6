package impl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/timestamp"
)

// encodeJob is the Job's JSON exactly as the generated 200 response writes
// it (encoding/json's Encoder: HTML-safe, one trailing newline), written
// field by field: encoding/json's reflection was a tenth of a poll's CPU.
// TestEncodeJobMatchesEncodingJSON holds the two to the same bytes.
func encodeJob(j gen.Job) ([]byte, error) {
	b := make([]byte, 0, 320+len(rawOrEmpty(j.Result)))
	b = append(b, `{"id":"`...)
	b = appendUUID(b, j.Id)
	b = append(b, `","type":`...)
	b = appendString(b, string(j.Type))
	b = append(b, `,"status":`...)
	b = appendString(b, string(j.Status))
	b = append(b, `,"result":`...)
	if j.Result == nil {
		b = append(b, "null"...)
	} else {
		var compact bytes.Buffer
		if err := json.Compact(&compact, *j.Result); err != nil {
			return nil, fmt.Errorf("encode job: result: %w", err)
		}
		var escaped bytes.Buffer
		json.HTMLEscape(&escaped, compact.Bytes())
		b = append(b, escaped.Bytes()...)
	}
	b = append(b, `,"error":`...)
	if j.Error == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *j.Error)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(j.Attempts), 10)
	var err error
	for _, f := range []struct {
		name string
		t    *timestamp.Time
	}{{`,"createdAt":`, &j.CreatedAt}, {`,"startedAt":`, j.StartedAt}, {`,"completedAt":`, j.CompletedAt}, {`,"updatedAt":`, &j.UpdatedAt}} {
		b = append(b, f.name...)
		if f.t == nil {
			b = append(b, "null"...)
			continue
		}
		if b, err = f.t.AppendJSON(b); err != nil {
			return nil, fmt.Errorf("encode job: %w", err)
		}
	}
	return append(b, '}', '\n'), nil
}

func rawOrEmpty(r *json.RawMessage) []byte {
	if r == nil {
		return nil
	}
	return *r
}

// appendUUID appends id's canonical lowercase form, as its MarshalText.
func appendUUID(b []byte, id uuid.UUID) []byte {
	var buf [36]byte
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf[j] = '-'
			j++
		}
		buf[j], buf[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return append(b, buf[:]...)
}

// appendString appends s as encoding/json writes a string. Plain printable
// ASCII without quotes, backslashes or HTML characters is copied; anything
// else goes through encoding/json itself, so that every escape is its own.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
