package model

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestOpenAIConverse(t *testing.T) {
	var got map[string]any
	var auth, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, auth = r.URL.Path, r.Header.Get("Authorization")
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"ok\":true}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`))
	}))
	defer srv.Close()
	p, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1/", APIKey: "sk-test", DefaultModelID: "llama3.2", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Converse(context.Background(), Request{System: "sys", Prompt: "question", JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text != `{"ok":true}` || resp.InputTokens != 9 || resp.OutputTokens != 3 {
		t.Errorf("resp = %+v", resp)
	}
	if path != "/v1/chat/completions" || auth != "Bearer sk-test" {
		t.Errorf("path %q auth %q", path, auth)
	}
	msgs := got["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[1].(map[string]any)["content"] != "question" {
		t.Errorf("messages = %v", msgs)
	}
	if got["model"] != "llama3.2" || got["max_tokens"] != float64(DefaultMaxTokens) {
		t.Errorf("model/max_tokens = %v %v", got["model"], got["max_tokens"])
	}
	if rf, _ := got["response_format"].(map[string]any); rf["type"] != "json_object" {
		t.Errorf("response_format = %v", got["response_format"])
	}
}

func TestOpenAIErrors(t *testing.T) {
	cases := []struct {
		status    int
		retryable bool
		client    string
	}{
		{429, true, "Model API error: 429 - Rate limit reached"},
		{500, true, "Model API error: 500 - Rate limit reached"},
		{503, true, "Model API error: 503 - Rate limit reached"},
		{400, false, "Model API error: 400 - Rate limit reached"},
		{401, false, "Model API error: 401 - Rate limit reached"},
		{404, false, "Model API error: 404 - Rate limit reached"},
	}
	for _, c := range cases {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(`{"error":{"message":"Rate limit\nreached","type":"x","code":"y"}}`))
		}))
		p, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", DefaultModelID: "m"})
		_, err := p.Converse(context.Background(), Request{Prompt: "q"})
		srv.Close()
		var me *Error
		if !errors.As(err, &me) {
			t.Fatalf("%d: err = %v", c.status, err)
		}
		if me.Retryable != c.retryable || me.ClientMessage() != c.client || me.Provider != ProviderOpenAI {
			t.Errorf("%d: %+v %q", c.status, me, me.ClientMessage())
		}
		if calls.Load() != 1 {
			t.Errorf("%d: %d calls", c.status, calls.Load())
		}
	}
}

func TestOpenAIConnectionError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	p, _ := NewOpenAI(OpenAIConfig{BaseURL: u + "/v1", DefaultModelID: "m"})
	_, err := p.Converse(context.Background(), Request{Prompt: "q"})
	var me *Error
	if !errors.As(err, &me) || me.Code != "ConnectionError" || !me.Retryable || strings.Contains(me.ClientMessage(), "127.0.0.1") {
		t.Fatalf("err = %#v", err)
	}
}

func TestNewFromConfig(t *testing.T) {
	env := map[string]string{"JOBS_MODEL_PROVIDER": "openai", "JOBS_OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "JOBS_MODEL_ID": "m"}
	p, err := New(ConfigFromEnv(func(k string) string { return env[k] }))
	if err != nil || p.Name() != ProviderOpenAI {
		t.Fatalf("%v %v", p, err)
	}
	p, err = New(Config{})
	if err != nil || !IsLocal(p) {
		t.Fatalf("default provider: %v %v", p, err)
	}
	if _, err := New(Config{Provider: "nope"}); err == nil {
		t.Fatal("unknown provider accepted")
	}
}
