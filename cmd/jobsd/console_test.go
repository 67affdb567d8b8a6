package main

import (
	"testing"

	"github.com/jobsd/jobsd/auth"
)

// TestConsoleConfig: the console's settings are checked at start, so a
// console whose tokens the API would refuse never starts.
func TestConsoleConfig(t *testing.T) {
	acfg := auth.Config{Issuer: "https://cognito-idp.eu-west-1.amazonaws.com/pool", ClientIDs: []string{"api", "console"}, TokenUse: auth.TokenUseAccess}
	tests := []struct {
		name         string
		client, base string
		tokenUse     string
		wantOn       bool
		wantErr      bool
	}{
		{name: "off", wantOn: false},
		{name: "on", client: "console", base: "https://jobs.example.com", wantOn: true},
		{name: "client not accepted", client: "other", base: "https://jobs.example.com", wantErr: true},
		{name: "no base", client: "console", wantErr: true},
		{name: "no client", base: "https://jobs.example.com", wantErr: true},
		{name: "base with a path", client: "console", base: "https://jobs.example.com/console", wantErr: true},
		{name: "id tokens", client: "console", base: "https://jobs.example.com", tokenUse: auth.TokenUseID, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOBS_UI_CLIENT_ID", tt.client)
			t.Setenv("JOBS_UI_BASE_URL", tt.base)
			a := acfg
			if tt.tokenUse != "" {
				a.TokenUse = tt.tokenUse
			}
			cfg, on, err := consoleConfig(a)
			if (err != nil) != tt.wantErr || on != tt.wantOn {
				t.Fatalf("on %v err %v", on, err)
			}
			if on && (cfg.Issuer != acfg.Issuer || cfg.ClientID != tt.client || cfg.BaseURL != tt.base) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}
