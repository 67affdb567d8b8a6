// Command vulngate reads `govulncheck -format json` on stdin, prints each
// vulnerability the code reaches, and exits 1 if any of them has a fixed
// version to upgrade to. Vulnerabilities without a fix are reported but do
// not fail the build: there is nothing to upgrade to yet.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

type message struct {
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

type vuln struct {
	id, module, version, fixed string
}

func main() {
	reached, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	fixable := 0
	for _, v := range reached {
		fixed := v.fixed
		if fixed == "" {
			fixed = "no fix yet"
		} else {
			fixable++
		}
		fmt.Printf("%-15s %s@%s (fixed in: %s)\n", v.id, v.module, v.version, fixed)
	}
	fmt.Printf("vulngate: %d vulnerabilities reached by the code, %d with a fix to upgrade to\n", len(reached), fixable)
	if fixable > 0 {
		os.Exit(1)
	}
}

// read collects the vulnerabilities whose vulnerable function the code
// calls (govulncheck's symbol-level findings).
func read(r io.Reader) ([]vuln, error) {
	dec := json.NewDecoder(r)
	seen := map[string]vuln{}
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading govulncheck output: %w", err)
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue
		}
		seen[f.OSV] = vuln{id: f.OSV, module: f.Trace[0].Module, version: f.Trace[0].Version, fixed: f.FixedVersion}
	}
	out := make([]vuln, 0, len(seen))
	for _, v := range seen {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}
