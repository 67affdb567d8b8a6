package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/ui"
)

// consoleConfig reads the operator console's settings for `jobsd serve`:
// with neither set the console is off; with one, both are required. The
// console's client must be one whose tokens the API accepts, and the API
// must accept access tokens, which is what the console sends.
func consoleConfig(acfg auth.Config) (ui.Config, bool, error) {
	clientID, base := os.Getenv("JOBS_UI_CLIENT_ID"), os.Getenv("JOBS_UI_BASE_URL")
	if clientID == "" && base == "" {
		return ui.Config{}, false, nil
	}
	if clientID == "" || base == "" {
		return ui.Config{}, false, usagef("the console needs both JOBS_UI_CLIENT_ID and JOBS_UI_BASE_URL (or neither, to turn it off)")
	}
	if !slices.Contains(acfg.ClientIDs, clientID) {
		return ui.Config{}, false, usagef("JOBS_UI_CLIENT_ID=%q is not one of JOBS_AUTH_CLIENT_IDS: the API would refuse the console's tokens", clientID)
	}
	if acfg.TokenUse != auth.TokenUseAccess {
		return ui.Config{}, false, usagef("the console sends access tokens: it needs JOBS_AUTH_TOKEN_USE=access")
	}
	if err := ui.CheckBaseURL(base); err != nil {
		return ui.Config{}, false, usagef("JOBS_UI_BASE_URL: %v", err)
	}
	return ui.Config{Issuer: acfg.Issuer, ClientID: clientID, BaseURL: base}, true, nil
}

// mountConsole serves the console under /ui/ on the API's server. Its
// routes are outside openapi.yaml, so the request validator lets them pass,
// and outside /api/, so they need no token: the pages are public, the data
// they read is not.
func mountConsole(e *echo.Echo, cfg ui.Config, log *slog.Logger) error {
	cfg.Log = log
	h, err := ui.New(cfg)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	e.Any("/ui", echo.WrapHandler(h))
	e.Any(ui.Prefix+"*", echo.WrapHandler(h))
	return nil
}
