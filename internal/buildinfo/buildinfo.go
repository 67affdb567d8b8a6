// Package buildinfo says which build of jobsd is running, from what the go
// command recorded in the binary (runtime/debug.ReadBuildInfo), so that
// `jobsd version` and `jobsctl version` need no version variable set by
// linker flags that a plain `go build` or `go install` would leave empty.
package buildinfo

import (
	"fmt"
	"io"
	"runtime/debug"
)

// Info is what the go command recorded about a build.
type Info struct {
	// Module is the main module's path.
	Module string
	// Version is the main module's version: a tag or pseudo-version for
	// `go install module@version`, "(devel)" for a build in a checkout.
	Version string
	// Revision is the VCS commit the build came from; empty when the build
	// was not stamped (-buildvcs=false, no git, or `go run`).
	Revision string
	// Time is the commit's time (RFC 3339), when stamped.
	Time string
	// Modified says the work tree had uncommitted changes; meaningful only
	// with a Revision.
	Modified bool
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.11".
	GoVersion string
	// Platform is GOOS/GOARCH of the build.
	Platform string
}

// Read returns the running binary's build information. A binary built in
// module mode always carries it; for one that does not, every field is
// empty and Fprint says "unknown".
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from the go command's record.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		info.Platform = goos + "/" + goarch
	}
	return info
}

// Fprint writes info as aligned "key value" lines under the program's
// name, the format of both binaries' version command. What was not
// recorded is said, not left blank.
func Fprint(w io.Writer, program string, info Info) error {
	revision, modified := "unknown (the build was not stamped with VCS information)", "unknown"
	if info.Revision != "" {
		revision, modified = info.Revision, fmt.Sprint(info.Modified)
	}
	goVersion := orUnknown(info.GoVersion)
	if info.Platform != "" {
		goVersion += " " + info.Platform
	}
	_, err := fmt.Fprintf(w, "%s %s\nmodule    %s\nrevision  %s\ntime      %s\nmodified  %s\ngo        %s\n",
		program, orUnknown(info.Version), orUnknown(info.Module), revision, orUnknown(info.Time), modified, goVersion)
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Short is the version and commit on one line ("unknown" when neither was
// recorded), as each process registers it in the registry of live
// processes.
func (i Info) Short() string {
	s := i.Version
	if i.Revision != "" {
		s += " " + i.Revision
	}
	return orUnknown(s)
}
