package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/pgserver/pgdocker"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/jobtype"
)

// hostAlias is the name under which the containers reach this machine
// (Docker's host-gateway): the test PostgreSQL's published port and the
// token issuer's key set served by this test.
const hostAlias = "host.docker.internal"

// testImageTag is the tag of the image this test builds when
// JOBS_TEST_IMAGE names none; the test removes it afterwards.
const testImageTag = "jobsd:image-test"

// clientID is the app client whose tokens the image's API accepts here.
const clientID = "jobsd-image-test"

// TestImage runs the runtime image as it is deployed: `migrate up` as a
// one-shot container, then `serve` and `worker` containers, all read-only
// and as the image's non-root user, against a PostgreSQL container, with
// tokens from an issuer whose key set the API fetches over HTTP. The
// black-box conformance suite then runs against the API, and two documents
// go through the worker's sandboxed parser, which re-executes the binary
// inside the container: one parses, a hostile one is killed at its limit.
func TestImage(t *testing.T) {
	proctest.SkipShort(t, "image")
	requireDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	image := runtimeImage(t, root)
	checkImageConfig(t, image)

	dbURL := startPostgres(t, ctx)
	iss, tokenFile := startIssuer(t)
	base := []string{"--add-host", hostAlias + ":host-gateway", "--read-only", "-e", "DATABASE_URL=" + dbURL}

	out := docker(t, append(append([]string{"run", "--rm", "--label", pgserver.ContainerLabel + "=true"}, base...), image, "migrate", "up")...)
	t.Logf("migrate up: %s", out)
	api := startContainer(t, image, append(base,
		"-p", "127.0.0.1::8080",
		"-e", "JOBS_AUTH_ISSUER="+iss.URL(),
		"-e", "JOBS_AUTH_CLIENT_IDS="+clientID,
	), "serve")
	worker := startContainer(t, image, append(base,
		"-p", "127.0.0.1::9090",
		"-e", "JOBS_METRICS_ADDR=:9090",
		// The hostile document below loops for ever; a short budget
		// makes its kill quick.
		"-e", "JOBS_PARSE_TIMEOUT=3s",
	), "worker")
	apiURL := "http://" + publishedAddr(t, api, "8080/tcp")
	waitReady(t, ctx, apiURL+"/readyz", api)
	waitReady(t, ctx, "http://"+publishedAddr(t, worker, "9090/tcp")+"/readyz", worker)

	t.Run("conformance", func(t *testing.T) { runConformance(t, ctx, root, apiURL, tokenFile) })
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(apiURL, client.WithToken(strings.TrimSpace(string(tok))))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("document parsed in a child process", func(t *testing.T) { parseDOCX(t, ctx, c) })
	t.Run("hostile document killed at its limit", func(t *testing.T) { parseHostilePDF(t, ctx, c, root) })
}

// requireDocker skips the test when no Docker engine can be reached (the
// only allowed skip), and fails it instead under JOBS_TEST_REQUIRE_DOCKER=1,
// as every other Docker-path test of the repository does.
func requireDocker(t *testing.T) {
	t.Helper()
	// PostgreSQL starts through testcontainers, the image's containers
	// through the docker CLI: both must reach the engine.
	err := pgdocker.Available(t.Context())
	if err == nil {
		_, err = dockerOutput("version", "--format", "{{.Server.Version}}")
	}
	if err == nil {
		return
	}
	if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
		t.Fatalf("the image test needs Docker and its CLI (JOBS_TEST_REQUIRE_DOCKER=1): %v", err)
	}
	t.Skipf("skipping: Docker is not reachable and JOBS_TEST_REQUIRE_DOCKER!=1 (the one allowed skip): %v", err)
}

// docker runs the docker CLI and returns its trimmed standard output,
// failing the test with its standard error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerOutput(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerOutput is docker without a test; a command that hangs (an engine
// that stopped answering) is killed after a few minutes.
func dockerOutput(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", errors.New("docker " + strings.Join(args, " ") + ": " + err.Error() + ": " + strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// runtimeImage returns JOBS_TEST_IMAGE when set (make image-test passes the
// image `make image` built), else builds one with `make image` and removes
// it when the test ends.
func runtimeImage(t *testing.T, root string) string {
	t.Helper()
	if img := os.Getenv("JOBS_TEST_IMAGE"); img != "" {
		docker(t, "image", "inspect", img)
		return img
	}
	cmd := exec.Command("make", "image", "IMAGE="+testImageTag)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if _, err := dockerOutput("image", "rm", testImageTag); err != nil {
			t.Logf("removing the test image: %v", err)
		}
	})
	return testImageTag
}

// checkImageConfig holds the image to what the Dockerfile promises: a
// numeric non-root user and the binary as its entrypoint, and a binary that
// says which build it is.
func checkImageConfig(t *testing.T, image string) {
	t.Helper()
	if user := docker(t, "image", "inspect", "--format", "{{.Config.User}}", image); user != "65532:65532" {
		t.Errorf("image user = %q, want 65532:65532 (numeric, not root)", user)
	}
	if ep := docker(t, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image); ep != `["/usr/local/bin/jobsd"]` {
		t.Errorf("image entrypoint = %s, want the jobsd binary", ep)
	}
	version := docker(t, "run", "--rm", "--label", pgserver.ContainerLabel+"=true", image, "version")
	if !strings.Contains(version, "module    github.com/jobsd/jobsd\n") {
		t.Errorf("jobsd version in the image:\n%s", version)
	}
	t.Logf("jobsd version in the image:\n%s", version)
}

// startPostgres starts the test PostgreSQL container and returns its URL as
// the jobsd containers see it: this machine's published port, through the
// host gateway.
func startPostgres(t *testing.T, ctx context.Context) string {
	t.Helper()
	srv, err := pgdocker.Start(ctx, os.Getenv("JOBS_TEST_POSTGRES_IMAGE"), t.Logf)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatalf("PostgreSQL URL: %v", err)
	}
	u.Host = net.JoinHostPort(hostAlias, u.Port())
	return u.String()
}

// startIssuer serves a token issuer's key set where the containers reach
// it (the default bridge's gateway, which host-gateway names) and writes an
// admin token it signed to a file, for the conformance suite's token
// command. The API is configured with the issuer URL alone and finds the
// key set below it, as it does with Cognito.
func startIssuer(t *testing.T) (*auth.Issuer, string) {
	t.Helper()
	gw := hostGateway(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatalf("listen for the issuer on the bridge gateway: %v", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, auth.IssuerKeyBits)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	iss := auth.NewIssuer(key, "http://"+net.JoinHostPort(hostAlias, port))
	mux := http.NewServeMux()
	mux.Handle(auth.JWKSPath, iss.JWKSHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	tok, err := iss.Mint("image-test", clientID, []string{auth.DefaultAdminGroup}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return iss, file
}

// hostGateway is the address at which the containers reach this machine:
// what host-gateway resolves to inside a container, read from the /etc/hosts
// of a throwaway one. It is taken from the container's side because the
// bridge network's IPAM gateway field, which `docker network inspect` shows,
// is empty on a daemon started for the first time.
func hostGateway(t *testing.T) string {
	t.Helper()
	image := os.Getenv("JOBS_TEST_POSTGRES_IMAGE")
	if image == "" {
		image = pgserver.DefaultImage
	}
	hosts := docker(t, "run", "--rm", "--label", pgserver.ContainerLabel+"=true",
		"--add-host", hostAlias+":host-gateway", "--entrypoint", "cat", image, "/etc/hosts")
	for _, line := range strings.Split(hosts, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == hostAlias && net.ParseIP(f[0]) != nil {
			return f[0]
		}
	}
	t.Fatalf("no address for %s (host-gateway) in a container's /etc/hosts:\n%s", hostAlias, hosts)
	return ""
}

// startContainer starts image with command in the background, labelled for
// cleanup, and removes it when the test ends (printing its log first if
// the test failed).
func startContainer(t *testing.T, image string, args []string, command ...string) string {
	t.Helper()
	run := append([]string{"run", "-d", "--label", pgserver.ContainerLabel + "=true"}, args...)
	id := docker(t, append(append(run, image), command...)...)
	t.Cleanup(func() {
		if t.Failed() {
			logs, err := exec.Command("docker", "logs", "--tail", "40", id).CombinedOutput()
			t.Logf("%s container log (last lines, %v):\n%s", command[0], err, logs)
		}
		if _, err := dockerOutput("rm", "-f", id); err != nil {
			t.Errorf("remove the %s container: %v", command[0], err)
		}
	})
	return id
}

// publishedAddr is the loopback address where the container's port is
// published.
func publishedAddr(t *testing.T, id, port string) string {
	t.Helper()
	for line := range strings.Lines(docker(t, "port", id, port)) {
		if addr := strings.TrimSpace(line); strings.HasPrefix(addr, "127.0.0.1:") {
			return addr
		}
	}
	t.Fatalf("port %s of container %s is not published on 127.0.0.1", port, id)
	return ""
}

// waitReady waits until url answers 200, failing when the container stops
// first or a minute passes.
func waitReady(t *testing.T, ctx context.Context, url, id string) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if running, _ := dockerOutput("inspect", "--format", "{{.State.Running}}", id); running != "true" {
			t.Fatalf("the container stopped before %s answered 200", url)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within a minute (last: %v)", url, err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// summary picks the suite's result lines out of go test -v output.
var summary = regexp.MustCompile(`(?m)^(--- |ok|FAIL|PASS).*$`)

// runConformance runs the conformance suite in black-box mode against the
// image's API, as scripts/conformance-blackbox.sh does against jobsd dev.
func runConformance(t *testing.T, ctx context.Context, root, apiURL, tokenFile string) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the conformance suite runs with the go command: %v", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "-v", "./conformance/")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"CONFORMANCE_BASE_URL="+apiURL,
		"CONFORMANCE_TOKEN_CMD=cat '"+tokenFile+"'",
		"CONFORMANCE_ALLOW_CREATE=1",
		"CONFORMANCE_PROVIDER=local",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("conformance suite against the image: %v\n%s", err, out)
	}
	lines := summary.FindAllString(string(out), -1)
	t.Logf("conformance suite against the image:\n%s", strings.Join(lines, "\n"))
	if !strings.Contains(string(out), "--- PASS: ") {
		t.Fatalf("the conformance suite ran no check:\n%s", out)
	}
}

// parseDOCX sends a DOCX through the worker's sandboxed parser, a child
// process re-executed from the image's binary.
func parseDOCX(t *testing.T, ctx context.Context, c *client.Client) {
	const text = "Parsed inside a scratch image"
	name := "a.docx"
	job, err := createJob(ctx, c, gen.ParseDocumentInput{
		ContentType: jobtype.ContentTypeDOCX, Document: buildDOCX(t, text), Filename: &name,
	})
	if err != nil {
		t.Fatalf("create PARSE_DOCUMENT: %v", err)
	}
	job, err = c.Wait(ctx, job.Id.String())
	if err != nil {
		t.Fatalf("wait for the DOCX parse: %v", err)
	}
	res, err := client.DecodeResult[client.ParseDocumentResult](job)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sections) != 1 || res.Sections[0].Text != text {
		t.Fatalf("sections = %+v, want one with %q", res.Sections, text)
	}
}

// createJob creates a PARSE_DOCUMENT job as a client that honours the
// contract's 429 does: the conformance suite, run just before against the
// same API and user, may have spent the user's write budget (its webhook
// checks send many creates), so a 429 is waited out (Retry-After is 1 s
// here), for at most 30 s.
func createJob(ctx context.Context, c *client.Client, in gen.ParseDocumentInput) (*gen.Job, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		job, err := c.CreateJob(ctx, "PARSE_DOCUMENT", in, client.CreateOptions{})
		if err == nil || !client.IsTemporary(err) || time.Now().After(deadline) {
			return job, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// parseHostilePDF sends a PDF whose page tree lists itself as its own
// child, which the PDF library follows for ever: the worker must kill the
// child at JOBS_PARSE_TIMEOUT and fail the job with the documented message.
func parseHostilePDF(t *testing.T, ctx context.Context, c *client.Client, root string) {
	doc, err := os.ReadFile(filepath.Join(root, "jobtype", "testdata", "hostile", "pdf-self-referencing-page-tree.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := createJob(ctx, c, gen.ParseDocumentInput{ContentType: jobtype.ContentTypePDF, Document: doc})
	if err != nil {
		t.Fatalf("create PARSE_DOCUMENT: %v", err)
	}
	_, err = c.Wait(ctx, job.Id.String())
	var failed *client.JobFailedError
	if !errors.As(err, &failed) || failed.Message != jobtype.ParseLimitsMessage {
		t.Fatalf("hostile PDF: err = %v, want the job FAILED with %q", err, jobtype.ParseLimitsMessage)
	}
}

// buildDOCX writes a minimal DOCX with one body paragraph.
func buildDOCX(t *testing.T, text string) []byte {
	t.Helper()
	files := []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`},
		{"word/document.xml", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>` + text + `</w:t></w:r></w:p><w:sectPr/></w:body></w:document>`},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
