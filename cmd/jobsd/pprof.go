package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves Go's profiler on JOBS_PPROF_ADDR (for example
// 127.0.0.1:6060) when it is set: profiles show where the time goes,
// benchmarks only how much there is. It is off by default and should stay
// on a loopback or private address.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("JOBS_PPROF_ADDR")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof not started", "addr", addr, "err", err)
		return
	}
	log.Info("pprof listening", "addr", ln.Addr().String())
	go func() {
		if err := http.Serve(ln, mux); err != nil {
			log.Warn("pprof stopped", "addr", addr, "err", err)
		}
	}()
}
