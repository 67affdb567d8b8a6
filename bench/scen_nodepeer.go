package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The Node peer of the poll goals (issue 23, item 1): nodepeer/server.js,
// GET /api/jobs/:id with Fastify, pg and jose, against the same database
// and the same tokens as jobsd, at each unfinished-job concurrency. Its
// package.json pins exact versions and no lock file is kept (a lock file
// names the registry's hosts): the bench installs the packages with the
// machine's own npm into a cache directory outside the repository. Without
// node or npm, or when the install fails, the goal is NOT MEASURED and says
// why; a peer that answers differently from jobsd fails the scenario.

// nodePeerDir is the peer's sources, relative to the bench's directory (the
// bench runs from bench/, as setupEnv's `git -C ..` assumes).
const nodePeerDir = "nodepeer"

// nodePeerPackages are the packages whose installed versions the result
// records.
var nodePeerPackages = []string{"fastify", "pg", "jose"}

// NodePeerResult is the Node peer beside jobsd's unfinished-job polls: the
// same cells (unfinished<c>) run against it as node<c> in the poll goals'
// Runs, and the ratios are taken per repeat, then the median.
type NodePeerResult struct {
	// Stack is the installed packages' and Node's versions.
	Stack string `json:"stack,omitempty"`
	// Processes is the server processes (node:cluster), one per CPU as
	// jobsd's GOMAXPROCS; PoolMax the PostgreSQL connections of all of
	// them together, jobsd's JOBS_DB_MAX_CONNS in the bench.
	Processes int `json:"processes,omitempty"`
	PoolMax   int `json:"poolMax,omitempty"`
	// NotMeasured says why the peer did not run (no node, no npm, a failed
	// install).
	NotMeasured string `json:"notMeasured,omitempty"`
	// RateRatio is jobsd's req/s ÷ the peer's, P99Ratio jobsd's p99 ÷ the
	// peer's, per unfinished-job concurrency.
	RateRatio map[int]Spread `json:"jobsdOverNodeRate,omitempty"`
	P99Ratio  map[int]Spread `json:"jobsdOverNodeP99,omitempty"`
	// FixedP99Ratio is the fixed-reply server's p99 ÷ the peer's: the
	// lowest p99 ratio this harness can show at that concurrency, since a
	// server that answers a constant leaves only the load generator's and
	// the machine's share of the tail.
	FixedP99Ratio map[int]Spread `json:"fixedOverNodeP99,omitempty"`
	// BareRateRatio and BareP99Ratio are the faster bare-read server's rate
	// and p99 ÷ the peer's (barereads.go): the goals' floor for a server
	// that reads PostgreSQL once per poll.
	BareRateRatio map[int]Spread `json:"bareReadOverNodeRate,omitempty"`
	BareP99Ratio  map[int]Spread `json:"bareReadOverNodeP99,omitempty"`

	dir string // the installed copy the peer runs from
}

// prepareNodePeer installs the peer (or finds it installed) and says how it
// will run; a result with NotMeasured set when it cannot.
func prepareNodePeer(ctx context.Context, poolMax int) *NodePeerResult {
	r := &NodePeerResult{Processes: e2cpus(), PoolMax: poolMax}
	dir, err := installNodePeer(ctx)
	if err != nil {
		r.NotMeasured = "no Node peer: " + err.Error()
		logf("  Node peer: NOT MEASURED: %v", err)
		return r
	}
	r.dir = dir
	r.Stack = nodePeerStack(ctx, dir)
	logf("  Node peer: %s, %d processes, pool %d in all (installed in %s)", r.Stack, r.Processes, r.PoolMax, dir)
	return r
}

// installNodePeer copies package.json and server.js into a cache directory
// named after package.json's hash and runs npm install there once; a stamp
// file marks a finished install, so that an interrupted one is redone.
func installNodePeer(ctx context.Context) (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is not on PATH", tool)
		}
	}
	pkg, err := os.ReadFile(filepath.Join(nodePeerDir, "package.json"))
	if err != nil {
		return "", fmt.Errorf("read the peer's package.json: %w", err)
	}
	server, err := os.ReadFile(filepath.Join(nodePeerDir, "server.js"))
	if err != nil {
		return "", fmt.Errorf("read the peer's server.js: %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the peer's packages: %w", err)
	}
	sum := sha256.Sum256(pkg)
	dir := filepath.Join(cache, "jobsd-bench", "nodepeer-"+hex.EncodeToString(sum[:6]))
	stamp := filepath.Join(dir, ".installed")
	if _, err := os.Stat(stamp); err != nil {
		if err := npmInstall(ctx, dir, pkg); err != nil {
			return "", err
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return "", fmt.Errorf("mark the peer installed: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "server.js"), server, 0o644); err != nil {
		return "", fmt.Errorf("copy the peer's server.js: %w", err)
	}
	return dir, nil
}

// npmInstall installs pkg's dependencies afresh into dir, with the
// machine's npm configuration (its registry), writing no lock file.
func npmInstall(ctx context.Context, dir string, pkg []byte) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), pkg, 0o644); err != nil {
		return fmt.Errorf("copy the peer's package.json: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	logf("  Node peer: npm install into %s ...", dir)
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--omit=dev")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm install failed: %w: %s", err, lastLines(string(out), 4))
	}
	return nil
}

// nodePeerStack reads the installed versions: what ran, not what was asked.
func nodePeerStack(ctx context.Context, dir string) string {
	var parts []string
	for _, name := range nodePeerPackages {
		var p struct{ Version string }
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json"))
		if err == nil {
			err = json.Unmarshal(b, &p)
		}
		if err != nil {
			p.Version = "?"
		}
		parts = append(parts, name+" "+p.Version)
	}
	out, err := exec.CommandContext(ctx, "node", "--version").Output()
	if err != nil {
		out = []byte("?")
	}
	return strings.Join(parts, " + ") + ", Node " + strings.TrimSpace(string(out))
}

// nodePeer is one running peer and a net/http client for it.
type nodePeer struct {
	proc   *selfProc // the same stop: close stdin, wait, kill
	base   string
	client loadClient
}

// stop stops the peer; a nil peer (not measured) does nothing.
func (p *nodePeer) stop() {
	if p == nil {
		return
	}
	p.client.close()
	p.proc.stop()
}

// startNodePeer runs the peer for one repeat of the poll goals against
// jobsd's database and issuer, checks that it answers as jobsd does
// (jobsdBase) and warms it with the requests jobsd was warmed with: every
// token once, then every finished job of the cells once. The count matters
// to the peer as the cache mattered to jobsd: V8 compiles the hot path
// only after thousands of calls (quick mode's 1,000 tokens alone left the
// peer slower in 2 s cells than in full mode's 5 s cells).
// It returns nil when the peer is not measured in this run.
func (res *PollGoalsResult) startNodePeer(ctx context.Context, t statusTarget, issuerURL, jobsdBase string,
	tokens []string, finished, unfinished []poll) (*nodePeer, error) {
	r := res.NodePeer
	if r == nil || r.dir == "" {
		return nil, nil
	}
	p, err := launchNodePeer(ctx, r, t.url, issuerURL)
	if err != nil {
		return nil, err
	}
	if err := checkNodePeer(p.base, jobsdBase, unfinished[0], otherToken(tokens, unfinished[0].token)); err != nil {
		p.stop()
		return nil, fmt.Errorf("the Node peer does not answer as jobsd: %w", err)
	}
	for _, warm := range []struct {
		n    int
		pick func(*mrand.Rand, int) poll
	}{{len(tokens), t.ix.onePerUser(tokens)}, {len(finished), inOrder(finished)}} {
		if w := runLoad(ctx, p.client, 64, 2*time.Minute, warm.n, warm.pick); w.Errors > 0 {
			p.stop()
			return nil, fmt.Errorf("warming the Node peer: %d errors, first: %s", w.Errors, w.FirstError)
		}
	}
	return p, nil
}

// launchNodePeer starts `node server.js` and reads the address it prints
// once every process listens.
func launchNodePeer(ctx context.Context, r *NodePeerResult, dbURL, issuerURL string) (*nodePeer, error) {
	cmd := exec.CommandContext(ctx, "node", "server.js")
	cmd.Dir = r.dir
	cmd.Env = append(cleanEnv(), "NODE_ENV=production", "DATABASE_URL="+dbURL, "JOBS_AUTH_ISSUER="+issuerURL,
		"JOBS_AUTH_CLIENT_IDS=bench", "NODEPEER_POOL_MAX="+strconv.Itoa(r.PoolMax),
		"NODEPEER_PROCESSES="+strconv.Itoa(r.Processes))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the Node peer: %w", err)
	}
	proc := &selfProc{cmd: cmd, stdin: stdin}
	// A peer that neither listens nor exits is killed, which ends the read.
	hung := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	hung.Stop()
	if err != nil {
		proc.stop()
		return nil, fmt.Errorf("the Node peer's address (it exited or hung?): %w", err)
	}
	base := "http://" + strings.TrimSpace(addr)
	return &nodePeer{proc: proc, base: base, client: newNetHTTPClient(base, 256)}, nil
}

// otherToken is a token of tokens that is not mine: another user's.
func otherToken(tokens []string, mine string) string {
	for _, t := range tokens {
		if t != mine {
			return t
		}
	}
	return ""
}

// peerCase is one request of the peer's check: what the peer must answer,
// the same status and the same JSON as jobsd.
type peerCase struct {
	name, path, token, ifNoneMatch string
	want                           int
}

// checkNodePeer sends the same requests to the peer and to jobsd: a job of
// the token's user (200, then 304 with its ETag), another user's job and an
// unknown id (404), no token and a bad token (401), a malformed id (400).
// Each must get the wanted status from both, and the same JSON body.
func checkNodePeer(peerBase, jobsdBase string, own poll, other string) error {
	if other == "" {
		return errors.New("check: only one user's token")
	}
	path := "/api/jobs/" + own.id
	status, body, etag, err := getOnce(jobsdBase, path, own.token, "")
	if err != nil {
		return fmt.Errorf("check: jobsd's own answer: %w", err)
	}
	var job struct{ ID string }
	if err := json.Unmarshal(body, &job); err != nil {
		return fmt.Errorf("check: jobsd's own answer: %w", err)
	}
	if status != http.StatusOK || etag == "" || job.ID != own.id {
		return fmt.Errorf("check: jobsd's own answer: HTTP %d, ETag %q, id %q, want 200 with an ETag and id %s", status, etag, job.ID, own.id)
	}
	cases := []peerCase{
		{name: "own job", path: path, token: own.token, want: http.StatusOK},
		{name: "own job, If-None-Match its ETag", path: path, token: own.token, ifNoneMatch: etag, want: http.StatusNotModified},
		{name: "another user's job", path: path, token: other, want: http.StatusNotFound},
		{name: "unknown id", path: "/api/jobs/00000000-0000-4000-8000-000000000000", token: own.token, want: http.StatusNotFound},
		{name: "no token", path: path, want: http.StatusUnauthorized},
		{name: "bad token", path: path, token: own.token[:len(own.token)-4] + "AAAA", want: http.StatusUnauthorized},
		{name: "malformed id", path: "/api/jobs/" + own.id[:35], token: own.token, want: http.StatusBadRequest},
	}
	for _, c := range cases {
		if err := checkPeerCase(peerBase, jobsdBase, c); err != nil {
			return fmt.Errorf("check %q: %w", c.name, err)
		}
	}
	return nil
}

func checkPeerCase(peerBase, jobsdBase string, c peerCase) error {
	var bodies [2][]byte
	for i, base := range []string{jobsdBase, peerBase} {
		status, body, _, err := getOnce(base, c.path, c.token, c.ifNoneMatch)
		if err != nil {
			return err
		}
		if status != c.want {
			return fmt.Errorf("%s answered HTTP %d, want %d: %s", []string{"jobsd", "the peer"}[i], status, c.want, body)
		}
		bodies[i] = body
	}
	if !sameJSON(bodies[0], bodies[1]) {
		return fmt.Errorf("bodies differ: jobsd %s, the peer %s", bytes.TrimSpace(bodies[0]), bytes.TrimSpace(bodies[1]))
	}
	return nil
}

// sameJSON compares two bodies as JSON values (empty bodies are equal).
func sameJSON(a, b []byte) bool {
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// checkClient sends the check's requests from 127.0.0.2, not from the load
// generator's 127.0.0.1: jobsd limits failed authentications per client
// address (JOBS_RATE_AUTH_FAIL), and the check's bad token must leave the
// address the cells poll from out of that limiter. When that dial fails
// (127.0.0.2 is not a local address on macOS by default) it dials again
// from the default address.
var checkClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialFromOtherLoopback}}

func dialFromOtherLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	conn, err := other.DialContext(ctx, network, addr)
	if err != nil && ctx.Err() == nil {
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	}
	return conn, err
}

// getOnce sends one GET (checkClient) and returns the status, body and ETag.
func getOnce(base, path, token, ifNoneMatch string) (int, []byte, string, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return 0, nil, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header.Get("ETag"), err
}

// summarizeNodePeer takes jobsd ÷ peer per repeat, then the medians.
func (res *PollGoalsResult) summarizeNodePeer() {
	r := res.NodePeer
	if r == nil || r.NotMeasured != "" {
		return
	}
	r.RateRatio, r.P99Ratio, r.FixedP99Ratio = map[int]Spread{}, map[int]Spread{}, map[int]Spread{}
	r.BareRateRatio, r.BareP99Ratio = map[int]Spread{}, map[int]Spread{}
	for _, c := range res.UnfinishedConc {
		api, node := res.Runs[fmt.Sprintf("unfinished%d", c)], res.Runs[fmt.Sprintf("node%d", c)]
		var rates, p99s []float64
		for i := range min(len(api), len(node)) {
			rates = append(rates, api[i].PerSec/node[i].PerSec)
			p99s = append(p99s, api[i].P99ms/node[i].P99ms)
		}
		r.RateRatio[c], r.P99Ratio[c] = spread(rates), spread(p99s)
		fixed := res.Runs[fmt.Sprintf("fixed%d", c)]
		var floor []float64
		for i := range min(len(fixed), len(node)) {
			floor = append(floor, fixed[i].P99ms/node[i].P99ms)
		}
		r.FixedP99Ratio[c] = spread(floor)
		bareRate, bareP99 := res.bestBare(c)
		var br, bp []float64
		for i := range min(len(bareRate), len(node)) {
			br = append(br, bareRate[i]/node[i].PerSec)
			bp = append(bp, bareP99[i]/node[i].P99ms)
		}
		r.BareRateRatio[c], r.BareP99Ratio[c] = spread(br), spread(bp)
	}
}

// nodePeerGoals are two goals per unfinished-job concurrency: jobsd's rate
// ≥ 3× the peer's, its p99 ≤ ¼ of the peer's.
func (res *PollGoalsResult) nodePeerGoals() []Goal {
	r := res.NodePeer
	if r == nil || r.NotMeasured != "" {
		why := "the Node peer was not set up"
		if r != nil {
			why = r.NotMeasured
		}
		return []Goal{{Name: "polls vs the Node peer: rate, and p99 at every concurrency", Target: ">= 3x rate, p99 <= 0.25x",
			NotMeasured: why}}
	}
	var gs []Goal
	for _, c := range res.UnfinishedConc {
		note := res.nodePeerErrors(c)
		rate, p99 := r.RateRatio[c], r.P99Ratio[c]
		for _, g := range []Goal{
			{Name: fmt.Sprintf("poll of an unfinished job: jobsd req/s ÷ the Node peer's, c=%d, net/http", c),
				Target: ">= 3.00x", Measured: rate.Median, Met: rate.Median >= 3,
				Note: joinNotes(note, bareFloor("rate ÷ the peer's", r.BareRateRatio[c], rate.Median >= 3 || r.BareRateRatio[c].Median >= 3))},
			{Name: fmt.Sprintf("poll of an unfinished job: jobsd p99 ÷ the Node peer's, c=%d, net/http", c),
				Target: "<= 0.25x", Measured: p99.Median, Met: p99.Median <= 0.25,
				Note: joinNotes(note, r.fixedFloor(c), bareFloor("p99 ÷ the peer's", r.BareP99Ratio[c], p99.Median <= 0.25 || r.BareP99Ratio[c].Median <= 0.25))},
		} {
			if len(rate.Values) == 0 || rate.Median != rate.Median { // no pair of cells, or NaN
				g.NotMeasured = fmt.Sprintf("no jobsd and Node peer cells at c=%d", c)
			}
			gs = append(gs, g)
		}
	}
	return gs
}

// nodePeerErrors says how many polls at c failed, jobsd's or the peer's, if
// any: a failed poll (a 429, a timeout) is counted in its side's rate, so
// the goal's figure must say so.
func (res *PollGoalsResult) nodePeerErrors(c int) string {
	var notes []string
	for _, side := range []struct{ name, key string }{{"jobsd", "unfinished"}, {"the Node peer", "node"}} {
		if s := summarizeRuns(res.Runs[fmt.Sprintf("%s%d", side.key, c)]); s.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s failed %d of %d polls", side.name, s.Errors, s.Requests))
		}
	}
	return strings.Join(notes, "; ")
}

// fixedFloor says what the fixed-reply server's own p99 ÷ the peer's was at
// c, when the harness could not show the goal's ratio even for it.
func (r *NodePeerResult) fixedFloor(c int) string {
	f, ok := r.FixedP99Ratio[c]
	if !ok || len(f.Values) == 0 || f.Median <= 0.25 {
		return ""
	}
	return fmt.Sprintf("the fixed reply's own p99 ÷ the peer's: %.3f (this harness's floor)", f.Median)
}

// joinNotes joins the non-empty notes with "; ".
func joinNotes(notes ...string) string {
	var kept []string
	for _, n := range notes {
		if n != "" {
			kept = append(kept, n)
		}
	}
	return strings.Join(kept, "; ")
}

func (res *PollGoalsResult) sanitizeNodePeer() {
	if r := res.NodePeer; r != nil {
		for _, m := range []map[int]Spread{r.RateRatio, r.P99Ratio, r.FixedP99Ratio, r.BareRateRatio, r.BareP99Ratio} {
			for k, v := range m {
				m[k] = cleanSpread(v)
			}
		}
	}
}

// printNodePeer prints the peer's cells beside jobsd's.
func (res *PollGoalsResult) printNodePeer(w io.Writer) {
	r := res.NodePeer
	if r == nil || r.NotMeasured != "" {
		why := "not set up"
		if r != nil {
			why = r.NotMeasured
		}
		fmt.Fprintf(w, "\tNode peer: NOT MEASURED: %s\n\n", why)
		return
	}
	fmt.Fprintf(w, "\tNode peer: %s; %d processes, %d PostgreSQL connections in all; same database, tokens and polls\n",
		r.Stack, r.Processes, r.PoolMax)
	fmt.Fprintf(w, "\tc\tNode peer req/s\tp50 / p99 ms\terrors\tjobsd unfinished req/s\tp50 / p99 ms\tjobsd ÷ node rate\tjobsd ÷ node p99\n")
	for _, c := range res.UnfinishedConc {
		n, a := summarizeRuns(res.Runs[fmt.Sprintf("node%d", c)]), summarizeRuns(res.Runs[fmt.Sprintf("unfinished%d", c)])
		fmt.Fprintf(w, "\t%d\t%.0f\t%.2f / %.2f\t%d\t%.0f\t%.2f / %.2f\t%s\t%s\n", c, n.PerSec.Median, n.P50ms.Median, n.P99ms.Median,
			n.Errors, a.PerSec.Median, a.P50ms.Median, a.P99ms.Median, sp(r.RateRatio[c], "%.2f"), sp(r.P99Ratio[c], "%.3f"))
	}
	fmt.Fprintln(w)
}
