package timestamp

import (
	"encoding/json"
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
