package impl

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/timestamp"
)

// encodeJob is the Job's JSON exactly as the generated 200 response writes
// it (encoding/json's Encoder: HTML-safe, one trailing newline), written
// field by field: encoding/json's reflection was a tenth of a poll's CPU.
// TestEncodeJobMatchesEncodingJSON holds the two to the same bytes.
func encodeJob(j gen.Job) ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"id":"`...)
	b = append(b, j.Id.String()...)
	b = append(b, `","type":`...)
	b = appendString(b, string(j.Type))
	b = append(b, `,"status":`...)
	b = appendString(b, string(j.Status))
	b = append(b, `,"result":`...)
	if j.Result == nil {
		b = append(b, "null"...)
	} else {
		// encoding/json's own compaction and escaping of a RawMessage.
		r, err := json.Marshal(*j.Result)
		if err != nil {
			return nil, fmt.Errorf("encode job: result: %w", err)
		}
		b = append(b, r...)
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
