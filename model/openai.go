package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/jobsd/jobsd/tracing"
)

// OpenAIConfig configures NewOpenAI.
type OpenAIConfig struct {
	// BaseURL is the API root, e.g. http://127.0.0.1:11434/v1 or https://api.openai.com/v1.
	BaseURL string
	// APIKey is sent as a bearer token when not empty.
	APIKey string
	// DefaultModelID is the model for requests without ModelID (required).
	DefaultModelID string
	// HTTPClient sends the requests; nil = http.DefaultClient.
	HTTPClient *http.Client
}

type openAI struct {
	cfg OpenAIConfig
}

// maxResponseBytes bounds how much of a provider's response body is read.
const maxResponseBytes = 8 << 20

// NewOpenAI returns a Provider for an OpenAI-compatible chat-completions API.
func NewOpenAI(cfg OpenAIConfig) (Provider, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("model: OpenAIConfig.BaseURL is required")
	}
	if cfg.DefaultModelID == "" {
		return nil, errors.New("model: OpenAIConfig.DefaultModelID is required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &openAI{cfg: cfg}, nil
}

// Name implements Provider.
func (o *openAI) Name() string { return ProviderOpenAI }

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model          string            `json:"model"`
	Messages       []chatMessage     `json:"messages"`
	MaxTokens      int               `json:"max_tokens"`
	ResponseFormat map[string]string `json:"response_format,omitempty"`
}

type chatResponse struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// Converse implements Provider.
func (o *openAI) Converse(ctx context.Context, req Request) (Response, error) {
	modelID := req.ModelID
	if modelID == "" {
		modelID = o.cfg.DefaultModelID
	}
	return traced(ctx, semconv.GenAIProviderNameOpenAI, modelID, func(ctx context.Context) (Response, error) {
		return o.converse(ctx, req)
	})
}

func (o *openAI) converse(ctx context.Context, req Request) (Response, error) {
	body := chatRequest{Model: req.ModelID, MaxTokens: maxTokens(req.MaxTokens)}
	if body.Model == "" {
		body.Model = o.cfg.DefaultModelID
	}
	if sys := systemPrompt(req); sys != "" {
		body.Messages = append(body.Messages, chatMessage{Role: "system", Content: sys})
	}
	body.Messages = append(body.Messages, chatMessage{Role: "user", Content: req.Prompt})
	if req.JSON {
		body.ResponseFormat = map[string]string{"type": "json_object"}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Response{}, fmt.Errorf("model: encoding request: %w", err)
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, o.cfg.BaseURL+"/chat/completions", bytes.NewReader(raw))
	if err != nil {
		return Response{}, &Error{Provider: ProviderOpenAI, Code: "ConfigurationError", Message: "invalid model API address", Retryable: false}
	}
	httpReq.Header.Set("Content-Type", "application/json")
	httpReq.Header.Set("Accept", "application/json")
	if o.cfg.APIKey != "" {
		httpReq.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	if tracing.Enabled() {
		// The model server may trace too: its spans join the call's.
		tracing.Propagator().Inject(ctx, propagation.HeaderCarrier(httpReq.Header))
	}
	res, err := o.cfg.HTTPClient.Do(httpReq)
	if err != nil {
		if te := transportError(ProviderOpenAI, ctx, err); te != nil {
			return Response{}, te
		}
		return Response{}, &Error{Provider: ProviderOpenAI, Code: "ConnectionError", Message: "could not connect to the model service", Retryable: true}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		if te := transportError(ProviderOpenAI, ctx, err); te != nil {
			return Response{}, te
		}
		return Response{}, &Error{Provider: ProviderOpenAI, Code: "ConnectionError", Message: "the connection to the model service broke", Retryable: true}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := ""
		if json.Unmarshal(data, &e) == nil {
			msg = cleanMessage(e.Error.Message)
		}
		if msg == "" {
			msg = http.StatusText(res.StatusCode)
		}
		return Response{}, &Error{
			Provider:  ProviderOpenAI,
			Code:      fmt.Sprintf("http_%d", res.StatusCode),
			Message:   msg,
			Retryable: res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500,
		}
	}
	var cr chatResponse
	if err := json.Unmarshal(data, &cr); err != nil || len(cr.Choices) == 0 {
		return Response{}, &Error{Provider: ProviderOpenAI, Code: "InvalidResponse", Message: "the model service returned an unexpected response", Retryable: true}
	}
	return Response{
		Text:         cr.Choices[0].Message.Content,
		InputTokens:  cr.Usage.PromptTokens,
		OutputTokens: cr.Usage.CompletionTokens,
	}, nil
}
