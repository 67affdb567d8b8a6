package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves reg on /metrics, and /healthz and /readyz: /healthz is 200
// while the process runs; /readyz is 200 when ready reports true (a nil
// ready counts as always ready) and 503 otherwise.
func Handler(reg *prometheus.Registry, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg, // counts its own errors as promhttp_metric_handler_errors_total
		// A collector that fails (the queue's query during a database
		// outage) drops its series; the rest of the scrape still arrives.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, metrics))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			writeStatus(w, http.StatusServiceUnavailable, `{"error":"Not ready"}`)
			return
		}
		writeStatus(w, http.StatusOK, `{"status":"ok"}`)
	})
	return mux
}

func writeStatus(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, body) // a failed write means the client is gone: nobody to tell
}

// Server is a running metrics listener.
type Server struct {
	srv       *http.Server
	addr      string
	done      chan error
	closeOnce sync.Once
	closeErr  error
}

// Listen serves Handler(reg, ready) on addr ("127.0.0.1:0" picks a free
// port) until Close. It returns once the address is bound, so a scrape can
// follow at once.
func Listen(addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(reg, ready),
			ReadHeaderTimeout: 5 * time.Second,
			// Nothing here streams, so a global write timeout is safe.
			WriteTimeout:   30 * time.Second,
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 16 << 10,
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.addr }

// URL is where the metrics are: http://host:port/metrics.
func (s *Server) URL() string { return "http://" + s.addr + "/metrics" }

// Close stops the listener, letting a scrape in progress finish for up to
// five seconds. Later calls return the first one's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		s.closeErr = err
	})
	return s.closeErr
}
