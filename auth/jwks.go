package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// maxJWKSBytes bounds the size of a key set document.
const maxJWKSBytes = 1 << 20

// minRSABits is the smallest RSA modulus accepted from a key set.
const minRSABits = 2048

// jwk is one JSON Web Key as published by Cognito and by [Issuer.JWKS].
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// jwkSet is a JSON Web Key Set document.
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// keyCache is a lazily filled, rate-limited cache of a JWKS endpoint's RSA
// signing keys, keyed by kid.
// retryAfterFailure is the refetch rate limit after a failed fetch.
const retryAfterFailure = 2 * time.Second

type keyCache struct {
	url          string
	client       *http.Client
	fetchTimeout time.Duration
	minInterval  time.Duration

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	lastFetch time.Time  // start of the last fetch attempt (zero: never)
	inflight  *fetchCall // non-nil while a fetch runs
	lastErr   error      // error of the last failed fetch, for messages

	// now is the clock of the rate limit; tests set a fake one so that they
	// move past an interval instead of sleeping through it.
	now func() time.Time
}

// fetchCall is one in-flight fetch shared by all callers waiting for it.
type fetchCall struct {
	done chan struct{}
}

func newKeyCache(url string, client *http.Client, minInterval time.Duration) *keyCache {
	timeout := client.Timeout
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	return &keyCache{
		url:          url,
		client:       client,
		fetchTimeout: timeout,
		minInterval:  minInterval,
		keys:         map[string]*rsa.PublicKey{},
		now:          time.Now,
	}
}

// get returns the key for kid, fetching the key set if kid is unknown and the
// rate limit allows. It never waits longer than ctx allows.
func (c *keyCache) get(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	c.mu.Lock()
	if k, ok := c.keys[kid]; ok {
		c.mu.Unlock()
		return k, nil
	}
	call := c.inflight
	if call == nil {
		interval := c.minInterval
		if c.lastErr != nil {
			// A failed fetch (the endpoint was down when the API started,
			// say) is retried sooner, or valid tokens would be refused for
			// the whole interval; still rate-limited, to spare the endpoint.
			interval = min(interval, retryAfterFailure)
		}
		if !c.lastFetch.IsZero() && c.now().Sub(c.lastFetch) < interval {
			lastErr := c.lastErr
			c.mu.Unlock()
			if lastErr != nil {
				return nil, fmt.Errorf("unknown kid %q (key set refetch rate-limited; last fetch failed: %w)", kid, lastErr)
			}
			return nil, fmt.Errorf("unknown kid %q (key set refetch rate-limited)", kid)
		}
		call = &fetchCall{done: make(chan struct{})}
		c.inflight = call
		c.lastFetch = c.now()
		// The fetch is detached from this caller's cancellation so that
		// other waiters are not failed by it; it is bounded by fetchTimeout.
		go c.fetch(context.WithoutCancel(ctx), call)
	}
	c.mu.Unlock()

	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for key set: %w", ctx.Err())
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	if c.lastErr != nil {
		return nil, fmt.Errorf("unknown kid %q: fetching key set: %w", kid, c.lastErr)
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

// fetch downloads the key set and, on success, replaces the cached keys.
// On failure the cached keys are kept.
func (c *keyCache) fetch(ctx context.Context, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, c.fetchTimeout)
	defer cancel()
	keys, err := c.download(ctx)

	c.mu.Lock()
	if err == nil {
		c.keys = keys
	}
	c.lastErr = err
	c.inflight = nil
	c.mu.Unlock()
	close(call.done)
}

func (c *keyCache) download(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: status %s", c.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", c.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", c.url, maxJWKSBytes)
	}
	return parseJWKS(body)
}

// parseJWKS extracts the RSA signing keys of a key set document, ignoring
// keys of other types or uses and malformed or weak RSA keys. A set without
// any usable key is an error.
func parseJWKS(body []byte) (map[string]*rsa.PublicKey, error) {
	var set jwkSet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding key set: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		pub, err := k.rsaPublicKey()
		if err != nil {
			continue
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("key set contains no usable RS256 signing key")
	}
	return keys, nil
}

func (k jwk) rsaPublicKey() (*rsa.PublicKey, error) {
	nb, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("modulus: %w", err)
	}
	eb, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil {
		return nil, fmt.Errorf("exponent: %w", err)
	}
	n := new(big.Int).SetBytes(nb)
	e := new(big.Int).SetBytes(eb)
	if n.BitLen() < minRSABits {
		return nil, errors.New("modulus too small")
	}
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return nil, errors.New("bad exponent")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}
