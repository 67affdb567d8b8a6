package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"
)

const templatePath = "../../deploy/lambda/template.yaml"

// rawTemplate is the template as JSON with its intrinsic functions kept
// ({"Ref": ...}, {"Fn::GetAtt": [...]}), for what goformation's typed
// resources leave out (its SQS event has no FunctionResponseTypes).
func rawTemplate(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// dig walks a decoded JSON document by keys and indexes.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: %v is not an object", path, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: %v has no item %d", path, v, k)
			}
			v = a[k]
		}
	}
	return v
}

// TestLambdaTemplate holds deploy/lambda/template.yaml to the relations the
// Lambda worker's guarantees need: the function outlives an attempt, the
// queue's visibility timeout is at least six function timeouts, the
// dead-letter queue takes a message only after more receives than any job
// has attempts, batch item failures are reported, the maintenance round
// runs on a schedule, the database is reached through RDS Proxy with at
// most two connections per instance and no session state
// (JOBS_DB_POOLER), the user cap comes from a parameter and its re-send
// delay is one SQS accepts, and the policies grant only
// what the function uses. Every variable it sets is one `jobsd lambda` reads.
func TestLambdaTemplate(t *testing.T) {
	tmpl, err := goformation.Open(templatePath)
	if err != nil {
		t.Fatalf("goformation: %v", err)
	}
	fn, err := tmpl.GetServerlessFunctionWithName("JobsFunction")
	if err != nil {
		t.Fatal(err)
	}
	queue, err := tmpl.GetSQSQueueWithName("JobsQueue")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.GetSQSQueueWithName("JobsDeadLetterQueue"); err != nil {
		t.Fatal(err)
	}
	proxy, err := tmpl.GetRDSDBProxyWithName("JobsDbProxy")
	if err != nil {
		t.Fatal(err)
	}
	raw := rawTemplate(t)
	res := func(path ...any) any { return dig(t, raw, append([]any{"Resources"}, path...)...) }

	env := fn.Environment.Variables
	duration := func(name string) time.Duration {
		d, err := time.ParseDuration(env[name])
		if err != nil {
			t.Fatalf("%s=%q: %v", name, env[name], err)
		}
		return d
	}
	if fn.Timeout == nil {
		t.Fatal("the function has no Timeout")
	}
	timeout := time.Duration(*fn.Timeout) * time.Second
	if attempt := duration("JOBS_WORKER_JOB_TIMEOUT") + duration("JOBS_WORKER_GRACE") + duration("JOBS_LAMBDA_RESERVE"); timeout <= attempt {
		t.Errorf("function Timeout %v must exceed the attempt timeout + grace + reserve (%v)", timeout, attempt)
	}
	if queue.VisibilityTimeout == nil {
		t.Error("the queue has no VisibilityTimeout")
	} else if *queue.VisibilityTimeout < 6**fn.Timeout {
		t.Errorf("queue VisibilityTimeout %d s, want at least 6 x the function's %d s", *queue.VisibilityTimeout, *fn.Timeout)
	}

	redrive := res("JobsQueue", "Properties", "RedrivePolicy")
	if got := getAttOf(t, dig(t, redrive, "deadLetterTargetArn")); got != "JobsDeadLetterQueue" {
		t.Errorf("deadLetterTargetArn points at %v, want JobsDeadLetterQueue", got)
	}
	const mostAttempts = 25 // JOBS_MAX_ATTEMPTS's bound (readAPISettings)
	if n, _ := dig(t, redrive, "maxReceiveCount").(float64); n <= mostAttempts {
		t.Errorf("maxReceiveCount %v must exceed the most attempts a job can have (%d)", n, mostAttempts)
	}

	sqsEvent := res("JobsFunction", "Properties", "Events", "Jobs")
	if dig(t, sqsEvent, "Type") != "SQS" || getAttOf(t, dig(t, sqsEvent, "Properties", "Queue")) != "JobsQueue" {
		t.Errorf("the SQS event source is not the job queue: %v", sqsEvent)
	}
	types, _ := dig(t, sqsEvent, "Properties", "FunctionResponseTypes").([]any)
	if !slices.Contains(types, any("ReportBatchItemFailures")) {
		t.Errorf("FunctionResponseTypes %v lacks ReportBatchItemFailures", types)
	}
	schedule := res("JobsFunction", "Properties", "Events", "Maintain")
	if dig(t, schedule, "Type") != "Schedule" || !strings.HasPrefix(dig(t, schedule, "Properties", "Schedule").(string), "rate(") {
		t.Errorf("no maintenance schedule: %v", schedule)
	}

	if proxy.EngineFamily != "POSTGRESQL" || proxy.RequireTLS == nil || !*proxy.RequireTLS {
		t.Errorf("proxy: engine %s, TLS %v", proxy.EngineFamily, proxy.RequireTLS)
	}
	dbURL, _ := json.Marshal(res("JobsFunction", "Properties", "Environment", "Variables", "DATABASE_URL"))
	if !strings.Contains(string(dbURL), "${JobsDbProxy.Endpoint}") {
		t.Errorf("DATABASE_URL does not go through the proxy: %s", dbURL)
	}
	// A job at the user cap comes back as a new message with this
	// DelaySeconds, which SQS takes up to 900 s.
	if d := duration("JOBS_LAMBDA_CAP_DELAY"); d <= 0 || d > 900*time.Second {
		t.Errorf("JOBS_LAMBDA_CAP_DELAY=%v, want more than 0 and at most 900 s", d)
	}
	if cap := res("JobsFunction", "Properties", "Environment", "Variables", "JOBS_USER_CONCURRENCY"); dig(t, cap, "Ref") != "UserConcurrency" {
		t.Errorf("JOBS_USER_CONCURRENCY is %v, want the UserConcurrency parameter", cap)
	}
	if env["JOBS_DB_MAX_CONNS"] != "2" {
		t.Errorf("JOBS_DB_MAX_CONNS=%q, want 2", env["JOBS_DB_MAX_CONNS"])
	}
	// Through the proxy, nothing may pin a session (prepared statements).
	if env["JOBS_DB_POOLER"] != poolerTransaction {
		t.Errorf("JOBS_DB_POOLER=%q, want %s: behind RDS Proxy the function must keep no session state", env["JOBS_DB_POOLER"], poolerTransaction)
	}

	checkPolicies(t, res("JobsFunction", "Properties", "Policies"))
	for name := range env {
		if !readByLambda(name) {
			t.Errorf("the template sets %s, which jobsd lambda does not read", name)
		}
	}
}

// getAttOf returns the resource a Fn::GetAtt names, in its long form
// (["Name", "Attr"]) or the short one ("Name.Attr").
func getAttOf(t *testing.T, v any) string {
	t.Helper()
	switch ga := dig(t, v, "Fn::GetAtt").(type) {
	case string:
		name, _, _ := strings.Cut(ga, ".")
		return name
	case []any:
		if len(ga) == 2 {
			name, _ := ga[0].(string)
			return name
		}
	}
	return ""
}

// checkPolicies: exactly sqs:SendMessage on the job queue and
// bedrock:InvokeModel on one foundation model; nothing else, no wildcard.
func checkPolicies(t *testing.T, policies any) {
	t.Helper()
	list, _ := policies.([]any)
	grants := map[string]string{}
	for _, p := range list {
		stmts, _ := dig(t, p, "Statement").([]any)
		for _, s := range stmts {
			if dig(t, s, "Effect") != "Allow" {
				continue
			}
			resource, _ := json.Marshal(dig(t, s, "Resource"))
			actions, _ := dig(t, s, "Action").([]any)
			for _, a := range actions {
				grants[a.(string)] = string(resource)
			}
		}
	}
	want := map[string]string{"sqs:SendMessage": "JobsQueue", "bedrock:InvokeModel": "foundation-model/${ModelId}"}
	if len(grants) != len(want) {
		t.Errorf("policies grant %v, want only %v", grants, want)
	}
	for action, on := range want {
		if r, ok := grants[action]; !ok || !strings.Contains(r, on) || strings.Contains(r, `"*"`) {
			t.Errorf("%s on %s, want it on %s only", action, r, on)
		}
	}
}

// readByLambda reports whether the settings table lists name for jobsd lambda.
func readByLambda(name string) bool {
	for _, s := range envSettings {
		if s.name == name && slices.Contains(s.commands, "lambda") {
			return true
		}
	}
	return false
}
