package model

import (
	"fmt"
	"strings"
)

// Config selects and configures the provider the service uses.
type Config struct {
	// Provider is "local" (default when empty), "bedrock" or "openai".
	Provider string
	// Bedrock configures the "bedrock" provider.
	Bedrock BedrockConfig
	// OpenAI configures the "openai" provider.
	OpenAI OpenAIConfig
}

// ConfigFromEnv reads a Config from environment variables through getenv
// (normally os.Getenv):
//
//	JOBS_MODEL_PROVIDER    local | bedrock | openai (default local)
//	JOBS_MODEL_ID          default model id for bedrock or openai
//	AWS_REGION             Bedrock region (else the AWS default chain's)
//	JOBS_BEDROCK_ENDPOINT  Bedrock base URL override
//	JOBS_OPENAI_BASE_URL   e.g. http://127.0.0.1:11434/v1
//	JOBS_OPENAI_API_KEY    optional bearer token
//
// Bedrock credentials always come from the default AWS chain.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		Provider: getenv("JOBS_MODEL_PROVIDER"),
		Bedrock: BedrockConfig{
			Region:         getenv("AWS_REGION"),
			DefaultModelID: getenv("JOBS_MODEL_ID"),
			Endpoint:       getenv("JOBS_BEDROCK_ENDPOINT"),
		},
		OpenAI: OpenAIConfig{
			BaseURL:        getenv("JOBS_OPENAI_BASE_URL"),
			APIKey:         getenv("JOBS_OPENAI_API_KEY"),
			DefaultModelID: getenv("JOBS_MODEL_ID"),
		},
	}
}

// New builds the provider cfg names.
func New(cfg Config) (Provider, error) {
	switch strings.ToLower(strings.TrimSpace(cfg.Provider)) {
	case "", "local":
		return NewLocal(), nil
	case "bedrock":
		return NewBedrock(cfg.Bedrock)
	case "openai", "openai-compatible":
		return NewOpenAI(cfg.OpenAI)
	default:
		return nil, fmt.Errorf("model: unknown provider %q (want local, bedrock or openai)", cfg.Provider)
	}
}
