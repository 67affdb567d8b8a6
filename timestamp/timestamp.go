// Package timestamp holds the API's time type: UTC ISO 8601 with exactly
// three fractional digits, the way the documented examples write it
// ("2026-03-04T12:00:00.000Z"). The generated models use it through the
// x-go-type extension in openapi.yaml, because time.Time marshals with zero
// or nine fractional digits and in the local offset.
package timestamp

import (
	"errors"
	"fmt"
	"time"
)

// Layout is the wire form of every timestamp the API writes.
const Layout = "2006-01-02T15:04:05.000Z"

// Time is a point in time that marshals as Layout in UTC (truncated, never
// rounded, to the millisecond, so the order of two times is kept) and
// unmarshals any RFC 3339 text.
type Time struct {
	time.Time
}

// New returns t as a Time.
func New(t time.Time) Time { return Time{Time: t} }

// Ptr returns a pointer to New(t), or nil when t is the zero time; it suits
// the nullable fields of the Job resource.
func Ptr(t time.Time) *Time {
	if t.IsZero() {
		return nil
	}
	v := New(t)
	return &v
}

// String returns the wire form.
func (t Time) String() string { return t.UTC().Format(Layout) }

// MarshalJSON writes the wire form as a JSON string.
func (t Time) MarshalJSON() ([]byte, error) {
	return t.AppendJSON(make([]byte, 0, len(Layout)+2))
}

// AppendJSON appends the wire form as a JSON string to b. It writes the
// digits itself: time.AppendFormat was a twentieth of a status poll's CPU.
func (t Time) AppendJSON(b []byte) ([]byte, error) {
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return nil, fmt.Errorf("timestamp: year %d outside 0..9999", year)
	}
	hour, minute, sec := u.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, u.Nanosecond()/1e6, 3) // truncated, as the layout's .000
	return append(b, 'Z', '"'), nil
}

// appendDigits appends v (non-negative) as exactly n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	var buf [4]byte
	for i := n - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:n]...)
}

// MarshalText writes the wire form.
func (t Time) MarshalText() ([]byte, error) {
	b, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return b[1 : len(b)-1], nil
}

// UnmarshalJSON reads a JSON string in any RFC 3339 form.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("timestamp: not a JSON string")
	}
	return t.UnmarshalText(b[1 : len(b)-1])
}

// UnmarshalText reads any RFC 3339 text.
func (t *Time) UnmarshalText(b []byte) error {
	v, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v
	return nil
}
