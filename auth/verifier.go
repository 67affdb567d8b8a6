package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized is wrapped by every verification failure returned by
// [Verifier.Verify]; test with errors.Is. The rest of the error text says
// why and is meant for logs only, never for the client.
var ErrUnauthorized = errors.New("unauthorized")

// JWKSPath is where Cognito (and [Issuer]) publish the key set, relative to
// the issuer URL.
const JWKSPath = "/.well-known/jwks.json"

// MaxTokenBytes is the length above which tokens are rejected unparsed.
const MaxTokenBytes = 8 << 10

// Defaults applied by [NewVerifier].
const (
	DefaultLeeway             = 30 * time.Second
	DefaultAdminGroup         = "admin"
	DefaultMinRefreshInterval = time.Minute
	DefaultResultCacheSize    = 10000
	defaultHTTPTimeout        = 5 * time.Second
)

// Token uses, the values of the token_use claim.
const (
	TokenUseAccess = "access"
	TokenUseID     = "id"
)

// Config configures a [Verifier].
type Config struct {
	// Issuer is required; a token's iss claim must equal it exactly.
	// Production: https://cognito-idp.{region}.amazonaws.com/{poolId}.
	Issuer string
	// JWKSURL is the key set location; default Issuer + JWKSPath.
	JWKSURL string
	// ClientIDs is the required, non-empty allow-list of app client IDs:
	// access tokens' client_id claim (ID tokens: aud) must be in it.
	ClientIDs []string
	// TokenUse is the required token_use claim: "access" (default) or "id".
	TokenUse string
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway (30s); a negative value means no leeway at all.
	Leeway time.Duration
	// AdminGroup is the cognito:groups entry that makes a caller an admin;
	// default "admin".
	AdminGroup string
	// HTTPClient fetches the key set; default a client with a 5s timeout.
	HTTPClient *http.Client
	// MinRefreshInterval rate-limits key set refetches triggered by unknown
	// kids (failed attempts count too); default 1 minute.
	MinRefreshInterval time.Duration
	// ResultCacheSize bounds the cache of successful verifications; zero
	// means DefaultResultCacheSize, negative disables the cache.
	ResultCacheSize int
}

// Principal is the verified caller.
type Principal struct {
	// Subject is the sub claim, never empty: the owner of the data.
	Subject string
	// Username is username (access tokens) or cognito:username (ID
	// tokens); it may be empty.
	Username string
	// Groups is cognito:groups.
	Groups []string
	// Admin reports whether Groups contains Config.AdminGroup.
	Admin bool
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
}

// clone returns a deep copy, so that cached principals cannot be mutated.
func (p *Principal) clone() *Principal {
	c := *p
	c.Groups = slices.Clone(p.Groups)
	return &c
}

// Verifier verifies bearer tokens; it is safe for concurrent use.
type Verifier struct {
	cfg     Config
	leeway  time.Duration
	keys    *keyCache
	results *resultCache // nil when disabled
	now     func() time.Time
}

// NewVerifier validates cfg, applies defaults and returns a Verifier. It does
// no network I/O: keys are fetched on first use.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: Config.Issuer is required")
	}
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("auth: Config.Issuer: %w", err)
	}
	if len(cfg.ClientIDs) == 0 {
		return nil, errors.New("auth: Config.ClientIDs is required (non-empty allow-list)")
	}
	if slices.Contains(cfg.ClientIDs, "") {
		return nil, errors.New("auth: Config.ClientIDs contains an empty client ID")
	}
	cfg.ClientIDs = slices.Clone(cfg.ClientIDs)
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = strings.TrimSuffix(cfg.Issuer, "/") + JWKSPath
	}
	if err := checkURL(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("auth: Config.JWKSURL: %w", err)
	}
	switch cfg.TokenUse {
	case "":
		cfg.TokenUse = TokenUseAccess
	case TokenUseAccess, TokenUseID:
	default:
		return nil, fmt.Errorf("auth: Config.TokenUse must be %q or %q, not %q", TokenUseAccess, TokenUseID, cfg.TokenUse)
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	if cfg.AdminGroup == "" {
		cfg.AdminGroup = DefaultAdminGroup
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	v := &Verifier{
		cfg:    cfg,
		leeway: leeway,
		keys:   newKeyCache(cfg.JWKSURL, cfg.HTTPClient, cfg.MinRefreshInterval),
		now:    time.Now,
	}
	switch {
	case cfg.ResultCacheSize == 0:
		v.results = newResultCache(DefaultResultCacheSize)
	case cfg.ResultCacheSize > 0:
		v.results = newResultCache(cfg.ResultCacheSize)
	}
	return v, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// cognitoClaims are the claims of Cognito access and ID tokens that matter
// here.
type cognitoClaims struct {
	jwt.RegisteredClaims
	TokenUse        string   `json:"token_use"`
	ClientID        string   `json:"client_id"`
	Username        string   `json:"username"`
	CognitoUsername string   `json:"cognito:username"`
	Groups          []string `json:"cognito:groups"`
}

func unauthorized(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnauthorized}, args...)...)
}

// Verify verifies token (the bare JWT, see [BearerToken]) and returns the
// caller. Every failure wraps [ErrUnauthorized]. ctx bounds any key set
// fetch the verification has to wait for.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, unauthorized("empty token")
	}
	if len(token) > MaxTokenBytes {
		return nil, unauthorized("token longer than %d bytes", MaxTokenBytes)
	}
	now := v.now()
	if v.results != nil {
		if p, ok := v.results.get(token, now); ok {
			return p, nil
		}
	}

	claims := &cognitoClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already restricts alg; double-check the type.
		if _, ok := t.Method.(*jwt.SigningMethodRSA); !ok || t.Method.Alg() != "RS256" {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token header has no kid")
		}
		return v.keys.get(ctx, kid)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}

	if claims.TokenUse != v.cfg.TokenUse {
		return nil, unauthorized("token_use is %q, want %q", claims.TokenUse, v.cfg.TokenUse)
	}
	p := &Principal{Subject: claims.Subject, Groups: claims.Groups}
	switch v.cfg.TokenUse {
	case TokenUseAccess:
		if !slices.Contains(v.cfg.ClientIDs, claims.ClientID) {
			return nil, unauthorized("client_id %q not allowed", claims.ClientID)
		}
		p.Username = claims.Username
	case TokenUseID:
		if !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(v.cfg.ClientIDs, a) }) {
			return nil, unauthorized("aud %q contains no allowed client ID", []string(claims.Audience))
		}
		p.Username = claims.CognitoUsername
	}
	if claims.Subject == "" {
		return nil, unauthorized("token has no sub")
	}
	// ExpirationTime is non-nil: WithExpirationRequired.
	p.ExpiresAt = claims.ExpiresAt.Time
	p.Admin = slices.Contains(p.Groups, v.cfg.AdminGroup)

	if v.results != nil {
		v.results.put(token, p.clone(), now)
	}
	return p, nil
}
