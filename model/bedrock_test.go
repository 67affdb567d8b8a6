package model

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// fakeBedrock serves POST /model/{modelId}/converse like Bedrock Runtime.
type fakeBedrock struct {
	calls   atomic.Int32
	lastReq *http.Request
	body    map[string]any
	status  int
	errType string
	errMsg  string
	delay   time.Duration
}

func (f *fakeBedrock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	f.lastReq = r
	raw, _ := io.ReadAll(r.Body)
	f.body = nil
	_ = json.Unmarshal(raw, &f.body)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/model/") || !strings.HasSuffix(r.URL.Path, "/converse") {
		w.Header().Set("X-Amzn-ErrorType", "UnknownOperationException:http://internal.amazon.com/coral/com.amazon.bedrock/")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"unknown operation"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", "11111111-2222-3333-4444-555555555555")
	if f.status != 0 {
		w.Header().Set("X-Amzn-ErrorType", f.errType+":http://internal.amazon.com/coral/com.amazon.bedrock/")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"message":` + mustJSON(f.errMsg) + `}`))
		return
	}
	_, _ = w.Write([]byte(`{"output":{"message":{"role":"assistant","content":[{"text":"Hello "},{"text":"from Bedrock"}]}},` +
		`"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":4,"totalTokens":16},"metrics":{"latencyMs":42}}`))
}

func mustJSON(s string) string { b, _ := json.Marshal(s); return string(b) }

func newTestBedrock(t *testing.T, f *fakeBedrock) Provider {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := NewBedrock(BedrockConfig{
		Region:         "eu-west-1",
		DefaultModelID: "anthropic.claude-3-haiku-20240307-v1:0",
		Endpoint:       srv.URL,
		HTTPClient:     srv.Client(),
		Credentials:    credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBedrockConverseSuccess(t *testing.T) {
	f := &fakeBedrock{}
	p := newTestBedrock(t, f)
	resp, err := p.Converse(context.Background(), Request{System: "Be brief.", Prompt: "Say hello", MaxTokens: 100, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text != "Hello from Bedrock" || resp.InputTokens != 12 || resp.OutputTokens != 4 {
		t.Fatalf("response = %+v", resp)
	}
	if got := f.lastReq.URL.Path; got != "/model/anthropic.claude-3-haiku-20240307-v1:0/converse" {
		t.Errorf("path = %q", got)
	}
	auth := f.lastReq.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(auth, "/eu-west-1/bedrock/aws4_request") || !strings.Contains(auth, "Signature=") {
		t.Errorf("Authorization = %q", auth)
	}
	msgs, _ := f.body["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("messages = %v", f.body["messages"])
	}
	m := msgs[0].(map[string]any)
	if m["role"] != "user" || m["content"].([]any)[0].(map[string]any)["text"] != "Say hello" {
		t.Errorf("message = %v", m)
	}
	sys := f.body["system"].([]any)[0].(map[string]any)["text"].(string)
	if !strings.HasPrefix(sys, "Be brief.") || !strings.Contains(sys, "JSON object") {
		t.Errorf("system = %q", sys)
	}
	if mt := f.body["inferenceConfig"].(map[string]any)["maxTokens"]; mt != float64(100) {
		t.Errorf("maxTokens = %v", mt)
	}
}

func TestBedrockModelOverride(t *testing.T) {
	f := &fakeBedrock{}
	p := newTestBedrock(t, f)
	if _, err := p.Converse(context.Background(), Request{ModelID: "amazon.nova-lite-v1:0", Prompt: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := f.lastReq.URL.Path; got != "/model/amazon.nova-lite-v1:0/converse" {
		t.Errorf("path = %q", got)
	}
	if _, ok := f.body["system"]; ok {
		t.Errorf("system sent without a system prompt: %v", f.body["system"])
	}
}

func TestBedrockErrors(t *testing.T) {
	cases := []struct {
		status    int
		errType   string
		msg       string
		retryable bool
		client    string
	}{
		{429, "ThrottlingException", "Rate exceeded", true, "Bedrock API error: ThrottlingException - Rate exceeded"},
		{503, "ServiceUnavailableException", "Service unavailable", true, "Bedrock API error: ServiceUnavailableException - Service unavailable"},
		{500, "InternalServerException", "boom", true, "Bedrock API error: InternalServerException - boom"},
		{408, "ModelTimeoutException", "Model timed out", true, "Bedrock API error: ModelTimeoutException - Model timed out"},
		{429, "ModelNotReadyException", "not ready", true, "Bedrock API error: ModelNotReadyException - not ready"},
		{400, "ValidationException", "Malformed input request", false, "Bedrock API error: ValidationException - Malformed input request"},
		{403, "AccessDeniedException", "You don't have access", false, "Bedrock API error: AccessDeniedException - You don't have access"},
		{404, "ResourceNotFoundException", "Model not found", false, "Bedrock API error: ResourceNotFoundException - Model not found"},
		{400, "SomeNewClientException", "odd", false, "Bedrock API error: SomeNewClientException - odd"},
		{502, "SomeNewServerException", "bad gateway", true, "Bedrock API error: SomeNewServerException - bad gateway"},
	}
	for _, c := range cases {
		t.Run(c.errType, func(t *testing.T) {
			f := &fakeBedrock{status: c.status, errType: c.errType, errMsg: c.msg}
			p := newTestBedrock(t, f)
			_, err := p.Converse(context.Background(), Request{Prompt: "hi"})
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %T %v is not *model.Error", err, err)
			}
			if me.Retryable != c.retryable || me.Code != c.errType || me.Provider != "Bedrock" {
				t.Errorf("error = %+v", me)
			}
			if got := me.ClientMessage(); got != c.client {
				t.Errorf("ClientMessage = %q, want %q", got, c.client)
			}
			if n := f.calls.Load(); n != 1 {
				t.Errorf("SDK made %d HTTP calls, want exactly 1 (its retries must be off)", n)
			}
		})
	}
}

func TestBedrockLongMessageTrimmed(t *testing.T) {
	f := &fakeBedrock{status: 400, errType: "ValidationException", errMsg: strings.Repeat("bad\ninput ", 100)}
	p := newTestBedrock(t, f)
	_, err := p.Converse(context.Background(), Request{Prompt: "hi"})
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want an *Error", err)
	}
	if n := len([]rune(me.Message)); n > 200 || strings.Contains(me.Message, "\n") {
		t.Errorf("message not trimmed to one line of 200 runes: %d %q", n, me.Message)
	}
}

func TestBedrockTimeout(t *testing.T) {
	f := &fakeBedrock{delay: 2 * time.Second}
	p := newTestBedrock(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Converse(ctx, Request{Prompt: "hi"})
	var me *Error
	if !errors.As(err, &me) || me.Code != "Timeout" || !me.Retryable {
		t.Fatalf("err = %v", err)
	}
	if got := me.ClientMessage(); got != "Bedrock API error: Timeout - the model did not answer in time" {
		t.Errorf("ClientMessage = %q", got)
	}
}

func TestBedrockConnectionError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p, err := NewBedrock(BedrockConfig{Region: "us-east-1", Endpoint: url,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Converse(context.Background(), Request{Prompt: "hi"})
	var me *Error
	if !errors.As(err, &me) || me.Code != "ConnectionError" || !me.Retryable {
		t.Fatalf("err = %#v", err)
	}
	if strings.Contains(me.ClientMessage(), "127.0.0.1") {
		t.Errorf("client message leaks the address: %q", me.ClientMessage())
	}
}
