package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/jobsd/jobsd/webhook"
)

// The reference libraries' fixed vector (the Go, C#, Java and Python suites
// of github.com/standard-webhooks/standard-webhooks share it).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignatureMatchesTheSpecificationVector(t *testing.T) {
	key, err := webhook.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Signature(key, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Fatalf("signature: got %q, want %q", got, vectorSignature)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, vectorID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(webhook.HeaderSignature, vectorSignature)
	if err := webhook.VerifyAt(vectorSecret, h, []byte(vectorBody), time.Unix(vectorTimestamp+10, 0)); err != nil {
		t.Fatalf("VerifyAt the vector: %v", err)
	}
}

// TestReferenceLibraryVerifiesOurDeliveries signs with a fresh secret,
// during a rotation (two keys), and has the reference library check each
// secret's signature.
func TestReferenceLibraryVerifiesOurDeliveries(t *testing.T) {
	oldSecret, newSecret := mustSecret(t), mustSecret(t)
	body := []byte(`{"type":"job.completed","timestamp":"2026-03-04T12:00:05.000Z","data":{}}`)
	h := http.Header{}
	webhook.SetHeaders(h, [][]byte{mustKey(t, newSecret), mustKey(t, oldSecret)}, "0b0c4a64-6c4a-4c2e-9d0e-3f1d2b9a7e10", time.Now(), body)
	if n := len(strings.Fields(h.Get(webhook.HeaderSignature))); n != 2 {
		t.Fatalf("signatures during rotation: got %d, want 2", n)
	}
	for _, s := range []string{oldSecret, newSecret} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("reference library refused a delivery: %v", err)
		}
		if err := webhook.Verify(s, h, body); err != nil {
			t.Errorf("Verify refused a delivery: %v", err)
		}
	}
	other := mustSecret(t)
	if err := webhook.Verify(other, h, body); !errors.Is(err, webhook.ErrNoSignature) {
		t.Errorf("Verify with another secret: got %v, want ErrNoSignature", err)
	}
}

// TestVerifyMatchesReferenceLibrary: what the reference library signs,
// Verify accepts, and it refuses what the reference refuses.
func TestVerifyMatchesReferenceLibrary(t *testing.T) {
	secret := mustSecret(t)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"a":1}`)
	sig, err := wh.Sign("msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	header := func(id string, ts time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(webhook.HeaderSignature, sig)
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   error
	}{
		{"valid", header("msg_1", now, sig), string(body), nil},
		{"valid among others", header("msg_1", now, "v1,AAAA "+sig), string(body), nil},
		{"other body", header("msg_1", now, sig), `{"a":2}`, webhook.ErrNoSignature},
		{"other id", header("msg_2", now, sig), string(body), webhook.ErrNoSignature},
		{"too old", header("msg_1", now.Add(-6*time.Minute), sig), string(body), webhook.ErrTooOld},
		{"too new", header("msg_1", now.Add(6*time.Minute), sig), string(body), webhook.ErrTooNew},
		{"no headers", http.Header{}, string(body), webhook.ErrMissing},
		{"bad timestamp", func() http.Header { h := header("msg_1", now, sig); h.Set(webhook.HeaderTimestamp, "x"); return h }(), string(body), webhook.ErrBadTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(secret, tt.header, []byte(tt.body))
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("Verify: got %v, want %v", err, tt.want)
			}
			refErr := wh.Verify([]byte(tt.body), tt.header)
			if (refErr == nil) != (err == nil) {
				t.Fatalf("Verify said %v, the reference library %v", err, refErr)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	s := mustSecret(t)
	if !strings.HasPrefix(s, webhook.SecretPrefix) {
		t.Fatalf("secret %q lacks %q", s, webhook.SecretPrefix)
	}
	if s == mustSecret(t) {
		t.Fatal("two secrets are equal")
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!!", "whsec_" + strings.Repeat("A", 8), "whsec_" + strings.Repeat("A", 100)} {
		if _, err := webhook.ParseSecret(bad); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("ParseSecret(%q): got %v, want ErrBadSecret", bad, err)
		}
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustKey(t *testing.T, secret string) []byte {
	t.Helper()
	k, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignerMatchesSetHeaders: a Signer reused for many messages, from
// many goroutines, sets the same headers as SetHeaders (whose signature the
// specification's vector and the reference library check above), one key
// or two.
func TestSignerMatchesSetHeaders(t *testing.T) {
	vectorKey := mustKey(t, vectorSecret)
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{
		{"one key", [][]byte{vectorKey}},
		{"during a rotation", [][]byte{mustKey(t, mustSecret(t)), vectorKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := webhook.NewSigner(tc.keys)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 50 {
						id := vectorID + strconv.Itoa(g*100+i)
						ts := time.Unix(vectorTimestamp+int64(i), 0)
						body := []byte(vectorBody + strings.Repeat(" ", i))
						want, got := http.Header{}, http.Header{}
						webhook.SetHeaders(want, tc.keys, id, ts, body)
						s.SetHeaders(got, id, ts, body)
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("Signer.SetHeaders (-SetHeaders +Signer):\n%s", diff)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
	h := http.Header{}
	webhook.NewSigner([][]byte{vectorKey}).SetHeaders(h, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got := h.Get(webhook.HeaderSignature); got != vectorSignature {
		t.Fatalf("Signer's signature of the vector: got %q, want %q", got, vectorSignature)
	}
}
