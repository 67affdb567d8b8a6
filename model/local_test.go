package model

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLocalPreview(t *testing.T) {
	p := NewLocal()
	prompt := "Summarise the market risks for maize farmers in Rift Valley. Maize prices fell 30% after the harvest. " +
		"Farmers store maize in poor silos. The weather was fine. Rift Valley maize traders cut prices again."
	r1, err := p.Converse(context.Background(), Request{Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := p.Converse(context.Background(), Request{Prompt: prompt})
	if r1.Text != r2.Text {
		t.Error("local provider is not deterministic")
	}
	if !strings.HasPrefix(r1.Text, "Local preview") || !strings.Contains(r1.Text, "Key terms: maize") || !strings.Contains(r1.Text, "- Rift Valley maize traders cut prices again.\n") {
		t.Errorf("preview = %q", r1.Text)
	}
	if strings.Contains(r1.Text, "The weather was fine") {
		t.Errorf("preview picked the least informative sentence: %q", r1.Text)
	}
}

func TestLocalMarkers(t *testing.T) {
	p := NewLocal()
	run := func(prompt string, attempt int) (Response, error) {
		return p.Converse(WithAttempt(context.Background(), attempt), Request{Prompt: "Tell me about goats. " + prompt})
	}
	wantThrottle := func(t *testing.T, err error) {
		t.Helper()
		var me *Error
		if !errors.As(err, &me) || !me.Retryable || me.ClientMessage() != "Bedrock API error: ThrottlingException - Rate exceeded" {
			t.Fatalf("want throttle, got %v", err)
		}
	}
	for a := 1; a <= 3; a++ {
		_, err := run("[[simulate:throttle]]", a)
		wantThrottle(t, err)
	}
	_, err := run("[[simulate:throttle-once]]", 1)
	wantThrottle(t, err)
	if r, err := run("[[simulate:throttle-once]]", 2); err != nil || strings.Contains(r.Text, "simulate") {
		t.Fatalf("throttle-once attempt 2: %v %q", err, r.Text)
	}
	for a := 1; a <= 2; a++ {
		_, err := run("[[simulate:throttle-twice]]", a)
		wantThrottle(t, err)
	}
	if _, err := run("[[simulate:throttle-twice]]", 3); err != nil {
		t.Fatal(err)
	}
	_, err = run("[[simulate:permanent]]", 1)
	var me *Error
	if !errors.As(err, &me) || me.Retryable || me.Code != "ValidationException" {
		t.Fatalf("permanent: %v", err)
	}
	if r, err := run("[[simulate:invalid-output]]", 1); err != nil || r.Text != "" {
		t.Fatalf("invalid-output: %v %q", err, r.Text)
	}
	// Without WithAttempt the attempt counts as 1.
	if _, err := p.Converse(context.Background(), Request{Prompt: "[[simulate:throttle-once]]"}); err == nil {
		t.Fatal("throttle-once without attempt did not fail")
	}
}

func TestLocalSlowMarker(t *testing.T) {
	p := NewLocal()
	start := time.Now()
	if _, err := p.Converse(context.Background(), Request{Prompt: "wait [[simulate:slow=150ms]] please"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("slept %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := p.Converse(ctx, Request{Prompt: "[[simulate:slow=30s]]"})
	var me *Error
	if !errors.As(err, &me) || me.Code != "Timeout" || !me.Retryable || time.Since(start) > 5*time.Second {
		t.Fatalf("slow with deadline: %v", err)
	}
}

func TestAttemptFrom(t *testing.T) {
	if AttemptFrom(context.Background()) != 1 || AttemptFrom(WithAttempt(context.Background(), 3)) != 3 {
		t.Fatal("AttemptFrom")
	}
}
