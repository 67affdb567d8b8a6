package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Sealed keys start with a version byte.
const (
	sealedPlain byte = 0 // stored as is: no key was configured
	sealedGCM   byte = 1 // AES-256-GCM: nonce, then ciphertext and tag
)

// ErrSealKey is the error of a sealing key that is not the base64 of 32
// bytes, or of a sealed secret that cannot be opened with the key given.
var ErrSealKey = errors.New("webhook: JOBS_WEBHOOK_KEY must be the base64 of 32 bytes, the key the secrets were sealed with")

// Sealer seals signing keys for storage, with AES-256-GCM under a key from
// the environment (JOBS_WEBHOOK_KEY), so that a copy of the database (a
// backup, a replica, a dump) does not give the secrets away. Without a key
// it stores them as they are, and says so (Encrypting).
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns the sealer of keyBase64, the standard base64 of 32
// bytes; "" gives a sealer that does not encrypt.
func NewSealer(keyBase64 string) (*Sealer, error) {
	if keyBase64 == "" {
		return &Sealer{}, nil
	}
	key, err := base64.StdEncoding.DecodeString(keyBase64)
	if err != nil || len(key) != 32 {
		return nil, ErrSealKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("webhook: sealer: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhook: sealer: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Encrypting says whether Seal encrypts.
func (s *Sealer) Encrypting() bool { return s.aead != nil }

// Seal returns key sealed for storage.
func (s *Sealer) Seal(key []byte) ([]byte, error) {
	if s.aead == nil {
		return append([]byte{sealedPlain}, key...), nil
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("webhook: seal: %w", err)
	}
	out := append([]byte{sealedGCM}, nonce...)
	return s.aead.Seal(out, nonce, key, []byte{sealedGCM}), nil
}

// Open returns the key that Seal sealed.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, ErrSealKey
	}
	switch sealed[0] {
	case sealedPlain:
		return sealed[1:], nil
	case sealedGCM:
		if s.aead == nil || len(sealed) < 1+s.aead.NonceSize() {
			return nil, ErrSealKey
		}
		n := s.aead.NonceSize()
		key, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte{sealedGCM})
		if err != nil {
			return nil, ErrSealKey
		}
		return key, nil
	}
	return nil, ErrSealKey
}
