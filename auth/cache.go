package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// resultCache remembers successful verifications until the token's exp.
// It is bounded: when full, expired entries are dropped and, if that is not
// enough, about a tenth of the entries are evicted at random (map order).
type resultCache struct {
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*Principal
}

func newResultCache(max int) *resultCache {
	return &resultCache{max: max, entries: make(map[[sha256.Size]byte]*Principal)}
}

// get returns a copy of the cached principal if it has not expired at now.
func (c *resultCache) get(key [sha256.Size]byte, now time.Time) (*Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	if !now.Before(p.ExpiresAt) {
		delete(c.entries, key)
		return nil, false
	}
	return p.clone(), true
}

// put stores p, which the cache then owns.
func (c *resultCache) put(key [sha256.Size]byte, p *Principal, now time.Time) {
	if !now.Before(p.ExpiresAt) {
		return // within leeway after exp: valid now, but never cache it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.ExpiresAt) {
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
	c.entries[key] = p
}

func (c *resultCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
