package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want Info
	}{
		{
			name: "stamped build of a modified tree",
			bi: debug.BuildInfo{
				GoVersion: "go1.26.11",
				Main:      debug.Module{Path: "github.com/jobsd/jobsd", Version: "(devel)"},
				Settings: []debug.BuildSetting{
					{Key: "-buildmode", Value: "exe"},
					{Key: "GOARCH", Value: "amd64"},
					{Key: "GOOS", Value: "linux"},
					{Key: "vcs", Value: "git"},
					{Key: "vcs.revision", Value: "75872fb0c0ffee0000000000000000000000abcd"},
					{Key: "vcs.time", Value: "2026-11-12T10:00:00Z"},
					{Key: "vcs.modified", Value: "true"},
				},
			},
			want: Info{
				Module: "github.com/jobsd/jobsd", Version: "(devel)",
				Revision: "75872fb0c0ffee0000000000000000000000abcd", Time: "2026-11-12T10:00:00Z", Modified: true,
				GoVersion: "go1.26.11", Platform: "linux/amd64",
			},
		},
		{
			name: "go install of a tag, no VCS stamp",
			bi: debug.BuildInfo{
				GoVersion: "go1.26.11",
				Main:      debug.Module{Path: "github.com/jobsd/jobsd", Version: "v1.2.3"},
				Settings:  []debug.BuildSetting{{Key: "GOARCH", Value: "arm64"}, {Key: "GOOS", Value: "darwin"}},
			},
			want: Info{Module: "github.com/jobsd/jobsd", Version: "v1.2.3", GoVersion: "go1.26.11", Platform: "darwin/arm64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, FromBuildInfo(&tt.bi)); diff != "" {
				t.Errorf("FromBuildInfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFprint(t *testing.T) {
	tests := []struct {
		name string
		info Info
		want string
	}{
		{
			name: "stamped",
			info: Info{Module: "github.com/jobsd/jobsd", Version: "(devel)", Revision: "abc123", Time: "2026-11-12T10:00:00Z",
				Modified: true, GoVersion: "go1.26.11", Platform: "linux/amd64"},
			want: `jobsd (devel)
module    github.com/jobsd/jobsd
revision  abc123
time      2026-11-12T10:00:00Z
modified  true
go        go1.26.11 linux/amd64
`,
		},
		{
			name: "nothing recorded",
			want: `jobsd unknown
module    unknown
revision  unknown (the build was not stamped with VCS information)
time      unknown
modified  unknown
go        unknown
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := Fprint(&b, "jobsd", tt.info); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("Fprint (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRead reads the test binary's own record: the go command always writes
// one in module mode.
func TestRead(t *testing.T) {
	info := Read()
	if info.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", info.GoVersion, runtime.Version())
	}
	if info.Module != "github.com/jobsd/jobsd" {
		t.Errorf("Module = %q, want github.com/jobsd/jobsd", info.Module)
	}
}

func TestShort(t *testing.T) {
	tests := []struct {
		name string
		info Info
		want string
	}{
		{name: "stamped", info: Info{Version: "(devel)", Revision: "75872fb"}, want: "(devel) 75872fb"},
		{name: "tag only", info: Info{Version: "v1.2.3"}, want: "v1.2.3"},
		{name: "nothing recorded", info: Info{}, want: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.info.Short(); got != tt.want {
				t.Errorf("Short() = %q, want %q", got, tt.want)
			}
		})
	}
}
