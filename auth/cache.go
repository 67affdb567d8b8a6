package auth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// resultCache remembers successful verifications until the token's exp.
// It is bounded: when full, expired entries are dropped and, if that is not
// enough, about a tenth of the entries are evicted at random (map order).
//
// Entries are found by a keyed 64-bit hash of the token (maphash, with a
// seed random to this process: nobody outside can aim at a hash) and kept
// with the whole token, which a lookup compares: a token that shares
// another's hash is a miss, never that token's principal. The hash costs
// a tenth of the SHA-256 it replaces on every request.
type resultCache struct {
	max  int
	seed maphash.Seed

	mu      sync.RWMutex // readers (every request) do not wait for each other
	entries map[uint64]cachedResult
}

type cachedResult struct {
	token string
	p     *Principal
}

func newResultCache(max int) *resultCache {
	return &resultCache{max: max, seed: maphash.MakeSeed(), entries: make(map[uint64]cachedResult)}
}

func (c *resultCache) key(token string) uint64 { return maphash.String(c.seed, token) }

// get returns a copy of the principal cached for token if it has not
// expired at now; an expired one is dropped.
func (c *resultCache) get(token string, now time.Time) (*Principal, bool) {
	k := c.key(token)
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || e.token != token {
		return nil, false
	}
	if !now.Before(e.p.ExpiresAt) {
		c.mu.Lock()
		if cur, ok := c.entries[k]; ok && cur.p == e.p {
			delete(c.entries, k)
		}
		c.mu.Unlock()
		return nil, false
	}
	return e.p.clone(), true
}

// put stores p for token; the cache then owns p.
func (c *resultCache) put(token string, p *Principal, now time.Time) {
	if !now.Before(p.ExpiresAt) {
		return // within leeway after exp: valid now, but never cache it
	}
	k := c.key(token)
	e := cachedResult{token: strings.Clone(token), p: p} // not the request's header string
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.p.ExpiresAt) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[k] = e
}

func (c *resultCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
