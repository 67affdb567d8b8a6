package timestamp

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"whole second", time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC), `"2026-03-04T12:00:00.000Z"`},
		{"millisecond", time.Date(2026, 3, 4, 12, 0, 1, 5_000_000, time.UTC), `"2026-03-04T12:00:01.005Z"`},
		{"truncates, never rounds", time.Date(2026, 3, 4, 12, 0, 1, 999_999_999, time.UTC), `"2026-03-04T12:00:01.999Z"`},
		{"other zone becomes UTC", time.Date(2026, 3, 4, 14, 0, 0, 0, time.FixedZone("x", 2*3600)), `"2026-03-04T12:00:00.000Z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(New(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr bool
	}{
		{"three digits", `"2026-03-04T12:00:00.000Z"`, time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC), false},
		{"no fraction", `"2026-03-04T12:00:00Z"`, time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC), false},
		{"offset", `"2026-03-04T14:00:00.5+02:00"`, time.Date(2026, 3, 4, 12, 0, 0, 500_000_000, time.UTC), false},
		{"not a time", `"yesterday"`, time.Time{}, true},
		{"not a string", `12`, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Time
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !got.Equal(tt.want) {
				t.Errorf("got %v, want %v", got.Time, tt.want)
			}
		})
	}
}

func TestYearOutOfRange(t *testing.T) {
	if _, err := json.Marshal(New(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))); err == nil {
		t.Error("year 10000 marshalled without error")
	}
}

// TestAppendJSONMatchesLayout: the hand-written digits are exactly what
// time's own formatting of Layout gives, across years, zones and fractions.
func TestAppendJSONMatchesLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	zones := []*time.Location{time.UTC, time.FixedZone("", 14*3600), time.FixedZone("", -(9*3600 + 30*60))}
	times := []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 3, 4, 12, 0, 0, 999_999, time.UTC),
	}
	for range 10_000 {
		sec := r.Int64N(253402300800) - 62135596800 // years 0001..9999
		times = append(times, time.Unix(sec, r.Int64N(1e9)).In(zones[r.IntN(len(zones))]))
	}
	for _, tm := range times {
		got, err := New(tm).AppendJSON(nil)
		want := `"` + tm.UTC().Format(Layout) + `"`
		if err != nil || string(got) != want {
			t.Fatalf("%v: %s, %v; want %s", tm, got, err, want)
		}
	}
}
