package main

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jobsd/jobsd/store"
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

// TestDatabaseSettings: the pool's URL, the direct one (DATABASE_URL when
// unset), JOBS_DB_POOLER's two values, and a LISTENing process refused a
// transaction pooler without a direct URL.
func TestDatabaseSettings(t *testing.T) {
	const pooled, direct = "postgres://jobs@pgbouncer:6432/jobs", "postgres://jobs@db:5432/jobs"
	tests := []struct {
		name, pooler, direct string
		want                 dbFlags
		wantErr, wantRefused bool
	}{
		{name: "direct only", want: dbFlags{url: pooled, direct: pooled}},
		{name: "none, with a direct URL", pooler: "none", direct: direct, want: dbFlags{url: pooled, direct: direct}},
		{name: "behind a transaction pooler", pooler: "transaction", direct: direct, want: dbFlags{url: pooled, direct: direct, pooler: true}},
		{name: "transaction pooler without a direct URL", pooler: "transaction", want: dbFlags{url: pooled, direct: pooled, pooler: true}, wantRefused: true},
		{name: "unknown pooler", pooler: "pgbouncer", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOBS_DB_POOLER", tt.pooler)
			t.Setenv("JOBS_DIRECT_DATABASE_URL", tt.direct)
			if tt.direct == "" {
				unsetEnv(t, "JOBS_DIRECT_DATABASE_URL")
			}
			d := dbFlags{url: pooled}
			err := d.check()
			if err == nil {
				err = d.readPooler()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want an error: %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, d, cmp.AllowUnexported(dbFlags{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if err := d.requireDirect(); (err != nil) != tt.wantRefused {
				t.Errorf("requireDirect: %v, want a refusal: %v", err, tt.wantRefused)
			}
			if got := d.storeOptions(store.Options{MaxOpenConns: 3}); got.Pooler != tt.want.pooler || got.MaxOpenConns != 3 {
				t.Errorf("storeOptions = %+v", got)
			}
		})
	}
}

// unsetEnv unsets name for the rest of t (t.Setenv first, so that it is
// restored afterwards).
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}
