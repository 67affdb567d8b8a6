package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jobsd/jobsd/webhook"
)

// fakeResolver answers each host from a script: the answers of successive
// lookups (the last one repeats), so that a test can change its mind
// between two lookups as a rebinding DNS server does.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]string
	lookups map[string]int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	script, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.lookups[host], len(script)-1)
	r.lookups[host]++
	var out []netip.Addr
	for _, a := range script[i] {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// ssrfSetup is an https receiver that counts what reaches it and a client
// whose dial of a checked public address is sent to the receiver (this
// machine has no route to the public addresses the fake DNS gives).
type ssrfSetup struct {
	received atomic.Int64
	dialled  chan string
	resolver *fakeResolver
	client   *http.Client
}

func newSSRFSetup(t *testing.T, answers map[string][][]string) *ssrfSetup {
	t.Helper()
	s := &ssrfSetup{dialled: make(chan string, 100), resolver: &fakeResolver{answers: answers, lookups: map[string]int{}}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.received.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "https://127.0.0.1/next", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		s.dialled <- addr
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.InsecureSkipVerify = true // the fake names do not match the test certificate
	s.client = webhook.NewTestClient(webhook.ClientOptions{Resolver: s.resolver}, dial, tlsCfg)
	return s
}

func (s *ssrfSetup) post(url string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// notPublic is every kind of address that a webhook must not reach.
var notPublic = []string{
	"127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3",
	"10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.0.1", "192.168.255.255",
	"100.64.0.1", "100.127.255.254",
	"169.254.169.254", "169.254.0.1",
	"224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
	"192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1", "192.0.0.8",
	"::1", "::", "fe80::1", "fc00::1", "fd12:3456:789a::1", "ff02::1", "fec0::1",
	"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1", "::ffff:0.0.0.0",
	"::127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:db8::1",
}

func TestIsPublic(t *testing.T) {
	for _, a := range notPublic {
		if webhook.IsPublic(netip.MustParseAddr(a)) {
			t.Errorf("IsPublic(%s) = true", a)
		}
	}
	for _, a := range []string{"93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8"} {
		if !webhook.IsPublic(netip.MustParseAddr(a)) {
			t.Errorf("IsPublic(%s) = false", a)
		}
	}
	if webhook.IsPublic(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("a zoned address is public")
	}
}

// TestCheckURL: what an endpoint's URL may be, before any lookup.
func TestCheckURL(t *testing.T) {
	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		want         error
	}{
		{"https host", "https://hooks.example.com/jobsd", false, nil},
		{"https public literal", "https://93.184.216.34/x", false, nil},
		{"http refused", "http://hooks.example.com/", false, webhook.ErrForbiddenURL},
		{"http allowed with allowPrivate", "http://127.0.0.1:8080/", true, nil},
		{"ftp", "ftp://hooks.example.com/", true, webhook.ErrForbiddenURL},
		{"relative", "/hooks", false, webhook.ErrForbiddenURL},
		{"no host", "https:///x", false, webhook.ErrForbiddenURL},
		{"credentials", "https://user:pw@hooks.example.com/", false, webhook.ErrForbiddenURL},
		{"fragment", "https://hooks.example.com/#x", false, webhook.ErrForbiddenURL},
		{"too long", "https://hooks.example.com/" + strings.Repeat("a", 2100), false, webhook.ErrForbiddenURL},
		{"loopback literal", "https://127.0.0.1/", false, webhook.ErrForbiddenAddress},
		{"metadata literal", "https://169.254.169.254/latest/meta-data/", false, webhook.ErrForbiddenAddress},
		{"IPv6 loopback literal", "https://[::1]:8443/", false, webhook.ErrForbiddenAddress},
		{"IPv4-mapped literal", "https://[::ffff:10.0.0.1]/", false, webhook.ErrForbiddenAddress},
		{"unspecified literal", "https://0.0.0.0/", false, webhook.ErrForbiddenAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := webhook.CheckURL(tt.url, tt.allowPrivate); !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
				t.Fatalf("CheckURL(%q): got %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

// TestClientRefusesEveryAddressThatIsNotPublic: a host name that resolves
// to any non-public address (alone, or among public ones) is refused before
// anything is dialled, and so is a literal one.
func TestClientRefusesEveryAddressThatIsNotPublic(t *testing.T) {
	for _, a := range notPublic {
		t.Run(a, func(t *testing.T) {
			s := newSSRFSetup(t, map[string][][]string{
				"evil.example":  {{a}},
				"mixed.example": {{"93.184.216.34", a}},
			})
			lit := a
			if strings.Contains(a, ":") {
				lit = "[" + a + "]"
			}
			for _, u := range []string{"https://evil.example/hook", "https://mixed.example/hook", "https://" + lit + "/hook"} {
				if _, err := s.post(u); !errors.Is(err, webhook.ErrForbiddenAddress) {
					t.Errorf("POST %s: got %v, want ErrForbiddenAddress", u, err)
				}
			}
			if n := len(s.dialled); n != 0 {
				t.Errorf("dialled %d addresses, want none", n)
			}
			if n := s.received.Load(); n != 0 {
				t.Errorf("the receiver got %d requests", n)
			}
		})
	}
}

// TestClientChecksTheAddressItDials: a DNS server that answers a public
// address to the first lookup and 127.0.0.1 to the next (rebinding) gets
// the first connection, to the checked address itself, and not the second.
func TestClientChecksTheAddressItDials(t *testing.T) {
	s := newSSRFSetup(t, map[string][][]string{"rebind.example": {{"93.184.216.34"}, {"127.0.0.1"}}})
	code, err := s.post("https://rebind.example/hook")
	if err != nil || code != http.StatusNoContent {
		t.Fatalf("first POST: %d, %v", code, err)
	}
	if got := <-s.dialled; got != "93.184.216.34:443" {
		t.Fatalf("dialled %q, want the checked address 93.184.216.34:443", got)
	}
	s.client.CloseIdleConnections() // the next request dials again
	if _, err := s.post("https://rebind.example/hook"); !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Fatalf("POST after rebinding: got %v, want ErrForbiddenAddress", err)
	}
	if n := s.received.Load(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

// TestClientFollowsNoRedirect: a 302 (here to a loopback address) is the
// answer; nothing is requested from where it points.
func TestClientFollowsNoRedirect(t *testing.T) {
	s := newSSRFSetup(t, map[string][][]string{"hooks.example": {{"93.184.216.34"}}})
	code, err := s.post("https://hooks.example/redirect")
	if err != nil || code != http.StatusFound {
		t.Fatalf("POST: %d, %v; want 302 and no error", code, err)
	}
	if n := s.received.Load(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

// TestClientRefusesPlainHTTP: without AllowPrivate, an http URL is never
// requested, even to a public address.
func TestClientRefusesPlainHTTP(t *testing.T) {
	s := newSSRFSetup(t, map[string][][]string{"hooks.example": {{"93.184.216.34"}}})
	if _, err := s.post("http://hooks.example/hook"); !errors.Is(err, webhook.ErrForbiddenURL) {
		t.Fatalf("POST http: got %v, want ErrForbiddenURL", err)
	}
	if len(s.dialled) != 0 {
		t.Fatal("dialled for a plain http URL")
	}
}

// TestControlRefusesPrivateSockets: the dialer's own check, on the
// address the socket connects to.
func TestControlRefusesPrivateSockets(t *testing.T) {
	for _, a := range []string{"127.0.0.1:443", "[::1]:443", "169.254.169.254:80", "[::ffff:10.0.0.1]:443"} {
		if err := webhook.ControlPublic("tcp", a, nil); !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("Control(%s): got %v", a, err)
		}
	}
	if err := webhook.ControlPublic("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("Control(public): %v", err)
	}
}

// TestClientAllowPrivate: JOBS_WEBHOOK_ALLOW_PRIVATE's client reaches a
// loopback http receiver.
func TestClientAllowPrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	c := webhook.NewClient(webhook.ClientOptions{AllowPrivate: true})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	strict := webhook.NewClient(webhook.ClientOptions{})
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodPost, strings.Replace(srv.URL, "http:", "https:", 1), nil)
	if _, err := strict.Do(req); !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Fatalf("strict client to loopback: got %v, want ErrForbiddenAddress", err)
	}
}
