package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The headers of a delivery (Standard Webhooks).
const (
	// HeaderID names the event; it is the same on every retry of one
	// delivery, so receivers use it to drop duplicates.
	HeaderID = "webhook-id"
	// HeaderTimestamp is the send time, in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature is one or more space-separated "v1,<base64 HMAC>"
	// signatures (two while a rotated secret's grace period lasts).
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// SecretBytes is the size of the key of the secrets NewSecret makes. The
// specification allows 24 to 64 bytes.
const SecretBytes = 32

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock before Verify refuses it (replay protection).
const Tolerance = 5 * time.Minute

// Errors of Verify and ParseSecret; test them with errors.Is.
var (
	ErrBadSecret   = errors.New("webhook: secret is not whsec_ followed by base64 of 24 to 64 bytes")
	ErrMissing     = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrBadTime     = errors.New("webhook: webhook-timestamp is not Unix seconds")
	ErrTooOld      = errors.New("webhook: timestamp too old")
	ErrTooNew      = errors.New("webhook: timestamp too new")
	ErrNoSignature = errors.New("webhook: no matching signature")
)

// NewSecret returns a fresh signing secret: "whsec_" and the standard
// base64 of SecretBytes random bytes.
func NewSecret() (string, error) {
	key := make([]byte, SecretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("webhook: new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// ParseSecret returns the key of a secret. The "whsec_" prefix is optional,
// as in the reference libraries; the key must be 24 to 64 bytes.
func ParseSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Signature is the "v1,<base64>" signature of one message under key:
// HMAC-SHA256 over "id.timestamp.body".
func Signature(key []byte, id string, ts time.Time, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// SignatureHeader is the webhook-signature value for keys (the current
// secret's first, then a rotated one's during its grace period).
func SignatureHeader(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Signature(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three headers of a delivery on h.
func SetHeaders(h http.Header, keys [][]byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, SignatureHeader(keys, id, ts, body))
}

// Verify checks a delivery as a receiver: header carries its three
// headers, body its exact bytes, secret the endpoint's signing secret. It
// fails unless one of the signatures is body's under secret and the
// timestamp is within Tolerance of now.
func Verify(secret string, header http.Header, body []byte) error {
	return VerifyAt(secret, header, body, time.Now())
}

// VerifyAt is Verify with the receiver's clock reading now.
func VerifyAt(secret string, header http.Header, body []byte, now time.Time) error {
	key, err := ParseSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissing
	}
	secs, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrBadTime
	}
	ts := time.Unix(secs, 0)
	switch {
	case now.Sub(ts) > Tolerance:
		return ErrTooOld
	case ts.Sub(now) > Tolerance:
		return ErrTooNew
	}
	want := []byte(Signature(key, id, ts, body))
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrNoSignature
}

// Signer signs deliveries under fixed keys (an endpoint's current key,
// then a rotated one's during its grace period), as SetHeaders does, for
// many messages: HMAC's key schedule (two SHA-256 blocks per key) is done
// once per key, not once per message. It is safe for concurrent use.
type Signer struct {
	keys  [][]byte
	pools []sync.Pool // of hash.Hash keyed with keys[i]
}

// NewSigner returns a Signer for keys, the current one first.
func NewSigner(keys [][]byte) *Signer {
	s := &Signer{keys: keys, pools: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		s.pools[i].New = func() any { return hmac.New(sha256.New, k) }
	}
	return s
}

// The headers' canonical forms (http.CanonicalHeaderKey), to set them
// without canonicalizing per message.
var (
	canonicalID        = http.CanonicalHeaderKey(HeaderID)
	canonicalTimestamp = http.CanonicalHeaderKey(HeaderTimestamp)
	canonicalSignature = http.CanonicalHeaderKey(HeaderSignature)
)

// SetHeaders sets the three headers of a delivery on h, as the function
// SetHeaders does with the Signer's keys.
func (s *Signer) SetHeaders(h http.Header, id string, ts time.Time, body []byte) {
	secs := strconv.AppendInt(make([]byte, 0, 20), ts.Unix(), 10)
	sig := make([]byte, 0, len(s.keys)*(4+base64.StdEncoding.EncodedLen(sha256.Size)))
	var sum [sha256.Size]byte
	for i := range s.keys {
		mac := s.pools[i].Get().(hash.Hash)
		mac.Reset()
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write(secs)
		mac.Write([]byte{'.'})
		mac.Write(body)
		mac.Sum(sum[:0])
		s.pools[i].Put(mac)
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = append(sig, "v1,"...)
		sig = base64.StdEncoding.AppendEncode(sig, sum[:])
	}
	h[canonicalID] = []string{id}
	h[canonicalTimestamp] = []string{string(secs)}
	h[canonicalSignature] = []string{string(sig)}
}
