package proctest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Options configure a jobsd command started by StartServe, StartWorker,
// StartDeliver, StartDev (and the test wrappers Serve, Worker, Deliver,
// Dev).
type Options struct {
	// Name names the process in messages; default: the command.
	Name string
	// Binary is the jobsd to run; default: Binary().
	Binary string
	// Env is added to BaseEnv (nil: this process's environment). A
	// JOBS_ADDR or JOBS_METRICS_ADDR given with port 0, or not given where
	// the harness needs it, is replaced by a free loopback port, which
	// Process.Addr and Process.MetricsAddr then name.
	Env     []string
	BaseEnv []string
	// ReadyWithin bounds the wait for /readyz; default 30 s.
	ReadyWithin time.Duration
	// MayExit accepts a process that exits before it is seen ready (a
	// worker that crashes on its first job): Start then returns it, ended,
	// without an error.
	MayExit bool
	// Observe and Echo are Spec's.
	Observe func(line string)
	Echo    io.Writer
}

// The listeners a jobsd command has, by the variable that places them.
const (
	apiAddrEnv     = "JOBS_ADDR"
	metricsAddrEnv = "JOBS_METRICS_ADDR"
)

// command says which listeners a jobsd command needs and which /readyz
// tell that it is ready.
type command struct {
	name         string
	api, metrics bool // the harness places this listener
	readyAPI     bool
	readyMetrics bool
}

var (
	serveCmd  = command{name: "serve", api: true, readyAPI: true}
	workerCmd = command{name: "worker", metrics: true, readyMetrics: true}
	// deliverCmd's /readyz says the database answers; its loop is running.
	deliverCmd = command{name: "deliver", metrics: true, readyMetrics: true}
	devCmd     = command{name: "dev", api: true, metrics: true, readyAPI: true, readyMetrics: true}
)

// StartServe runs `jobsd serve` on a free loopback port and waits until its
// /readyz answers 200 (the database answers and the change listener is up).
func StartServe(ctx context.Context, o Options) (*Process, error) {
	return start(ctx, serveCmd, o)
}

// StartWorker runs `jobsd worker` with its metrics listener on a free
// loopback port and waits until that listener's /readyz answers 200 (the
// worker is claiming and the database answers).
func StartWorker(ctx context.Context, o Options) (*Process, error) {
	return start(ctx, workerCmd, o)
}

// StartDeliver runs `jobsd deliver` (webhook delivery alone) with its
// metrics listener on a free loopback port and waits until that listener's
// /readyz answers 200.
func StartDeliver(ctx context.Context, o Options) (*Process, error) {
	return start(ctx, deliverCmd, o)
}

// LaunchWorker starts `jobsd worker` as StartWorker does but returns at
// once: the benchmark starts several and then waits for each
// (Process.WaitReady), so that they come up together.
func LaunchWorker(o Options) (*Process, error) {
	p, _, err := launch(workerCmd, o)
	return p, err
}

// StartDev runs `jobsd dev` (API, worker, dev issuer, console) on free
// loopback ports and waits until the API's and the metrics listener's
// /readyz answer 200.
func StartDev(ctx context.Context, o Options) (*Process, error) {
	return start(ctx, devCmd, o)
}

// bindTries is how often a start is tried when a chosen port was taken
// between choosing and binding it (another test's connection can get it).
const bindTries = 3

func start(ctx context.Context, c command, o Options) (*Process, error) {
	within := o.ReadyWithin
	if within <= 0 {
		within = 30 * time.Second
	}
	for try := 1; ; try++ {
		p, chosen, err := launch(c, o)
		if err != nil {
			return nil, err
		}
		err = p.WaitReady(ctx, within)
		if err == nil || o.MayExit && p.Exited() && !portTaken(p) {
			return p, nil
		}
		_ = p.Stop(5 * time.Second)
		if !chosen || try == bindTries || !portTaken(p) {
			return nil, err
		}
	}
}

// portTaken reports whether the process ended because a port it was given
// was in use.
func portTaken(p *Process) bool {
	return p.Exited() && strings.Contains(p.Tail(20), "address already in use")
}

// launch starts c, placing its listeners; chosen reports whether the
// harness chose a port (so that another try may choose another).
func launch(c command, o Options) (p *Process, chosen bool, err error) {
	env := append([]string(nil), o.Env...)
	place := func(name string, needed bool) (string, error) {
		addr, _ := lookupEnv(env, name)
		anyPort := strings.HasSuffix(addr, ":0")
		if addr != "" && !anyPort || addr == "" && !needed {
			return addr, nil // placed by the caller, or off
		}
		free, err := FreeAddr()
		if err != nil {
			return "", err
		}
		env = append(env, name+"="+free)
		chosen = true
		return free, nil
	}
	apiAddr, err := place(apiAddrEnv, c.api)
	if err != nil {
		return nil, false, err
	}
	metricsAddr, err := place(metricsAddrEnv, c.metrics)
	if err != nil {
		return nil, false, err
	}
	var ready []string
	if c.readyAPI {
		ready = append(ready, "http://"+apiAddr+"/readyz")
	}
	if c.readyMetrics {
		ready = append(ready, "http://"+metricsAddr+"/readyz")
	}
	name := o.Name
	if name == "" {
		name = c.name
	}
	p, err = Launch(Spec{
		Name: name, Path: o.Binary, Args: []string{c.name},
		BaseEnv: o.BaseEnv, Env: env, Ready: ready, Observe: o.Observe, Echo: o.Echo,
	})
	if err != nil {
		return nil, false, err
	}
	if c.api {
		p.Addr = apiAddr
	}
	p.MetricsAddr = metricsAddr
	return p, chosen, nil
}

// lookupEnv returns the last value env gives name.
func lookupEnv(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}
