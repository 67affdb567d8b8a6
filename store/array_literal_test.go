package store

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// TestArrayLiteral: Finish's literals are what pq.Array wrote before.
func TestArrayLiteral(t *testing.T) {
	texts := []string{"", "completed", `{"output":"a \"quoted\" \\ back, {slash}"}`, "é\n\t'", "NULL"}
	floats := []float64{0, 1.5, 0.001, 60, 123456.789}
	ids := []uuid.UUID{uuid.Nil, uuid.MustParse("0190a6b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"), uuid.New()}
	want := func(v any) string {
		t.Helper()
		s, err := pq.Array(v).Value()
		if err != nil {
			t.Fatal(err)
		}
		return s.(string)
	}
	for n := 0; n <= len(texts); n++ {
		tl, bl, fl, ul := newArrayLiteral(0), newArrayLiteral(1), newArrayLiteral(2), newArrayLiteral(3)
		us := []string{}
		for i := range n {
			tl.text(texts[i])
			bl.textBytes([]byte(texts[i]))
			fl.float(floats[i])
			ul.uuid(ids[i%len(ids)])
			us = append(us, ids[i%len(ids)].String())
		}
		for _, c := range []struct{ got, want string }{
			{tl.String(), want(texts[:n])},
			{bl.String(), want(texts[:n])},
			{fl.String(), want(floats[:n])},
			{ul.String(), strings.ReplaceAll(want(us), `"`, "")}, // unquoted: nothing to quote
		} {
			if c.got != c.want {
				t.Errorf("n=%d: got %s, want %s", n, c.got, c.want)
			}
		}
	}
}
