package store

import "testing"

// TestPooledURL: binary_parameters=yes is added to both forms of
// connection string lib/pq takes, keeping the rest, and wins over a "no".
func TestPooledURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"URL", "postgres://jobs:pw@pgbouncer:6432/jobs?sslmode=require", "postgres://jobs:pw@pgbouncer:6432/jobs?binary_parameters=yes&sslmode=require"},
		{"URL without parameters", "postgresql://jobs@h/db", "postgresql://jobs@h/db?binary_parameters=yes"},
		{"URL that says no", "postgres://h/db?binary_parameters=no", "postgres://h/db?binary_parameters=yes"},
		{"key=value", "host=pgbouncer port=6432 dbname=jobs", "host=pgbouncer port=6432 dbname=jobs binary_parameters=yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pooledURL(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("pooledURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}
