package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jobsd/jobsd/auth"
)

// devClientID is the app client id of the local dev issuer's tokens.
const devClientID = "jobsd-dev"

// devKeyPath is where the dev issuer keeps its signing key across restarts.
func devKeyPath() (string, error) {
	if p := os.Getenv("JOBS_DEV_KEY"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", usagef("JOBS_DEV_KEY is not set and there is no user config folder: %v", err)
	}
	return filepath.Join(dir, "jobsd", "dev-issuer.pem"), nil
}

// devIssuerURL is the dev issuer's URL for an API listening on addr; its
// JWKS is served by the API itself under this path.
func devIssuerURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/dev-issuer"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/dev-issuer"
}

func runToken(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "the user (token subject); required")
	admin := fs.Bool("admin", false, "put the user in the admin group")
	ttl := fs.Duration("ttl", time.Hour, "lifetime; negative mints an already expired token")
	addr := fs.String("addr", envOr("JOBS_ADDR", "127.0.0.1:8080"), "address of the jobsd dev whose issuer signs (env JOBS_ADDR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		return usagef("--sub is required")
	}
	keyPath, err := devKeyPath()
	if err != nil {
		return err
	}
	issuerAddr := *addr
	if a := os.Getenv("JOBS_DEV_ISSUER_ADDR"); a != "" {
		issuerAddr = a // the issuer has its own origin
	}
	iss, err := auth.LoadOrCreateIssuer(keyPath, devIssuerURL(issuerAddr))
	if err != nil {
		return err
	}
	var groups []string
	if *admin {
		groups = []string{auth.DefaultAdminGroup}
	}
	tok, err := iss.Mint(*sub, devClientID, groups, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
