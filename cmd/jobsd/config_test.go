package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnvCIDRs: JOBS_TRUSTED_PROXIES takes ranges and bare addresses, and
// names itself when an entry is neither.
func TestEnvCIDRs(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
		wantErr     bool
	}{
		{"unset", "", nil, false},
		{"ranges", "10.0.0.0/8, fd00::/8", []string{"10.0.0.0/8", "fd00::/8"}, false},
		{"bare addresses", "192.0.2.10,2001:db8::1", []string{"192.0.2.10/32", "2001:db8::1/128"}, false},
		{"host bits are masked", "10.1.2.3/16", []string{"10.1.0.0/16"}, false},
		{"not a range", "10.0.0.0/8,proxy.internal", nil, true},
		{"bad prefix", "10.0.0.0/33", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOBS_TRUSTED_PROXIES", tt.value)
			got, err := envCIDRs("JOBS_TRUSTED_PROXIES")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want an error: %v", err, tt.wantErr)
			}
			var gotS []string
			for _, r := range got {
				gotS = append(gotS, r.String())
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
