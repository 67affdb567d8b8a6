package webhook_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/jobsd/jobsd/webhook"
)

func TestSealer(t *testing.T) {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	s, err := webhook.NewSealer(base64.StdEncoding.EncodeToString(k))
	if err != nil {
		t.Fatal(err)
	}
	secret := mustKey(t, mustSecret(t))
	sealed, err := s.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed secret contains the secret")
	}
	got, err := s.Open(sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: %x, %v", got, err)
	}
	other, _ := webhook.NewSealer(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if _, err := other.Open(sealed); !errors.Is(err, webhook.ErrSealKey) {
		t.Fatalf("Open with another key: %v", err)
	}
	plain, _ := webhook.NewSealer("")
	if _, err := plain.Open(sealed); !errors.Is(err, webhook.ErrSealKey) {
		t.Fatalf("Open without a key: %v", err)
	}
	if _, err := webhook.NewSealer("c2hvcnQ="); !errors.Is(err, webhook.ErrSealKey) {
		t.Fatalf("NewSealer(short key): %v", err)
	}
}
