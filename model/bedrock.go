package model

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// DefaultBedrockModelID is used when neither the Request nor BedrockConfig names a model.
const DefaultBedrockModelID = "anthropic.claude-3-haiku-20240307-v1:0"

// BedrockConfig configures NewBedrock.
type BedrockConfig struct {
	// Region is the AWS region; empty = the default chain's, else us-east-1.
	Region string
	// DefaultModelID is the model for requests without ModelID; empty = DefaultBedrockModelID.
	DefaultModelID string
	// Endpoint overrides the service base URL (tests, VPC endpoints); empty = AWS's.
	Endpoint string
	// HTTPClient sends the requests; nil = the SDK's default client.
	HTTPClient *http.Client
	// Credentials signs the requests; nil = the default AWS credential chain.
	Credentials aws.CredentialsProvider
}

type bedrock struct {
	client       *bedrockruntime.Client
	defaultModel string
}

// NewBedrock returns a Provider that calls Amazon Bedrock's Converse API.
// The SDK makes exactly one HTTP attempt per Converse call: retrying is the
// job system's business.
func NewBedrock(cfg BedrockConfig) (Provider, error) {
	var awsCfg aws.Config
	if cfg.Credentials != nil {
		awsCfg = aws.Config{Region: cfg.Region, Credentials: cfg.Credentials}
	} else {
		var opts []func(*config.LoadOptions) error
		if cfg.Region != "" {
			opts = append(opts, config.WithRegion(cfg.Region))
		}
		loaded, err := config.LoadDefaultConfig(context.Background(), opts...)
		if err != nil {
			return nil, fmt.Errorf("model: loading AWS configuration: %w", err)
		}
		awsCfg = loaded
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	awsCfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	client := bedrockruntime.NewFromConfig(awsCfg, func(o *bedrockruntime.Options) {
		o.Retryer = aws.NopRetryer{}
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
	})
	model := cfg.DefaultModelID
	if model == "" {
		model = DefaultBedrockModelID
	}
	return &bedrock{client: client, defaultModel: model}, nil
}

// Name implements Provider.
func (b *bedrock) Name() string { return ProviderBedrock }

// Converse implements Provider.
func (b *bedrock) Converse(ctx context.Context, req Request) (Response, error) {
	modelID := req.ModelID
	if modelID == "" {
		modelID = b.defaultModel
	}
	return traced(ctx, semconv.GenAIProviderNameAWSBedrock, modelID, func(ctx context.Context) (Response, error) {
		return b.converse(ctx, req, modelID)
	})
}

func (b *bedrock) converse(ctx context.Context, req Request, modelID string) (Response, error) {
	in := &bedrockruntime.ConverseInput{
		ModelId: aws.String(modelID),
		Messages: []types.Message{{
			Role:    types.ConversationRoleUser,
			Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: req.Prompt}},
		}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(int32(maxTokens(req.MaxTokens)))},
	}
	if sys := systemPrompt(req); sys != "" {
		in.System = []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: sys}}
	}
	out, err := b.client.Converse(ctx, in)
	if err != nil {
		return Response{}, classifyBedrock(ctx, err)
	}
	var resp Response
	if msg, ok := out.Output.(*types.ConverseOutputMemberMessage); ok {
		var sb strings.Builder
		for _, block := range msg.Value.Content {
			if t, ok := block.(*types.ContentBlockMemberText); ok {
				sb.WriteString(t.Value)
			}
		}
		resp.Text = sb.String()
	}
	if out.Usage != nil {
		resp.InputTokens = int(aws.ToInt32(out.Usage.InputTokens))
		resp.OutputTokens = int(aws.ToInt32(out.Usage.OutputTokens))
	}
	return resp, nil
}

// bedrockRetryable lists the Bedrock error codes worth another attempt.
var bedrockRetryable = map[string]bool{
	"ThrottlingException":         true,
	"ServiceUnavailableException": true,
	"InternalServerException":     true,
	"ModelTimeoutException":       true,
	"ModelNotReadyException":      true,
}

// classifyBedrock turns an SDK error into an *Error.
func classifyBedrock(ctx context.Context, err error) *Error {
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var apiErr smithy.APIError
	if status != 0 && errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		msg := cleanMessage(apiErr.ErrorMessage())
		if code == "" {
			code = fmt.Sprintf("http_%d", status)
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		retry, known := bedrockRetryable[code]
		if !known {
			retry = status >= 500 || status == http.StatusTooManyRequests
		}
		return &Error{Provider: ProviderBedrock, Code: code, Message: msg, Retryable: retry}
	}
	if te := transportError(ProviderBedrock, ctx, err); te != nil {
		return te
	}
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return &Error{Provider: ProviderBedrock, Code: "ConnectionError", Message: "could not connect to the model service", Retryable: true}
	}
	if status >= 500 {
		return &Error{Provider: ProviderBedrock, Code: fmt.Sprintf("http_%d", status), Message: http.StatusText(status), Retryable: true}
	}
	// Unparseable responses and other client-side failures: worth another try.
	return &Error{Provider: ProviderBedrock, Code: "UnknownError", Message: "the model service returned an unexpected response", Retryable: true}
}
