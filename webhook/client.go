package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// DefaultTimeout bounds one delivery request: connecting, sending and
// reading the answer's headers and the first bytes of its body.
const DefaultTimeout = 15 * time.Second

// MaxURLBytes bounds an endpoint's URL.
const MaxURLBytes = 2048

// ErrForbiddenURL and ErrForbiddenAddress are the client's refusals.
var (
	// ErrForbiddenURL: not an absolute https URL with a host (http is
	// allowed with AllowPrivate), or it carries credentials or a fragment.
	ErrForbiddenURL = errors.New("webhook: URL must be https:// with a host, without credentials or fragment")
	// ErrForbiddenAddress: the host is, or resolves to, an address that is
	// not public (loopback, private, link-local, CGNAT, multicast...).
	ErrForbiddenAddress = errors.New("webhook: address is not public")
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ClientOptions configure NewClient.
type ClientOptions struct {
	// AllowPrivate allows plain http and every address (development and
	// tests: JOBS_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
	// Resolver looks up hosts; nil means net.DefaultResolver.
	Resolver Resolver
	// IdleConnsPerHost is how many connections to one host are kept open
	// between requests; 0 means 4. The sender's whole concurrency: many
	// endpoints may share a host (a platform receiving for its tenants),
	// and with fewer kept the client closes a connection after most
	// requests and opens another for the next, which cost more CPU than
	// the requests themselves.
	IdleConnsPerHost int
	// dial connects to an address already checked (ip:port); nil means a
	// net.Dialer. Tests replace it to observe what is dialled.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// tls, when set, is the transport's TLS configuration (tests: trust
	// their server's certificate).
	tls *tls.Config
}

// CheckURL says whether raw may be an endpoint's URL. With allowPrivate
// false it must be https, and a literal IP host must be public; a host name
// is checked when dialled, on each address it resolves to.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > MaxURLBytes {
		return ErrForbiddenURL
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return ErrForbiddenURL
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	default:
		return ErrForbiddenURL
	}
	if allowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !IsPublic(ip) {
		return ErrForbiddenAddress
	}
	return nil
}

// NewClient returns the HTTP client that sends deliveries. It uses no
// proxy (a proxy would dial on our behalf, past the check), follows no
// redirect (a 3xx is the answer, and is not a success), and, unless
// AllowPrivate, dials only public addresses: it resolves the host itself,
// refuses it if any address is not public, and dials the checked address,
// so a DNS answer that changes between check and connection (rebinding)
// cannot slip through; the dialer's Control checks the socket's address
// once more.
func NewClient(o ClientOptions) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.IdleConnsPerHost <= 0 {
		o.IdleConnsPerHost = 4
	}
	d := &net.Dialer{Timeout: o.Timeout}
	if !o.AllowPrivate {
		d.Control = controlPublic
	}
	if o.dial == nil {
		o.dial = d.DialContext
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           o.dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, o.IdleConnsPerHost),
		MaxIdleConnsPerHost:   o.IdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		TLSClientConfig:       o.tls,
	}
	if !o.AllowPrivate {
		tr.DialContext = publicDialer(o.Resolver, o.dial)
	}
	return &http.Client{
		Transport: schemeCheck{next: tr, allowHTTP: o.AllowPrivate},
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// schemeCheck refuses any request that is not https (unless allowHTTP):
// the last word on the scheme, whatever the URL's check said when the
// endpoint was saved.
type schemeCheck struct {
	next      http.RoundTripper
	allowHTTP bool
}

func (s schemeCheck) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" && !(s.allowHTTP && r.URL.Scheme == "http") {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, ErrForbiddenURL
	}
	return s.next.RoundTrip(r)
}

// CloseIdleConnections closes the transport's idle connections (what
// http.Client.CloseIdleConnections calls).
func (s schemeCheck) CloseIdleConnections() {
	if c, ok := s.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// publicDialer resolves the host of addr, refuses it unless every address
// is public, and dials the addresses themselves (never the name again).
func publicDialer(r Resolver, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("webhook: dial %s: %w", addr, err)
		}
		ips, err := resolve(ctx, r, host)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			if !IsPublic(ip) {
				return nil, fmt.Errorf("webhook: dial %s (%s): %w", host, ip, ErrForbiddenAddress)
			}
		}
		var errs []error
		for _, ip := range ips {
			c, err := dial(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("webhook: dial %s: %w", host, errors.Join(errs...))
	}
}

// resolve returns host's addresses (host itself when it is one).
func resolve(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("webhook: resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("webhook: resolve %s: no addresses", host)
	}
	return ips, nil
}

// controlPublic refuses a socket about to connect to an address that is
// not public: the last check, on the address the kernel is given.
func controlPublic(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: dial %s: %w", address, ErrForbiddenAddress)
	}
	if !IsPublic(ap.Addr()) {
		return fmt.Errorf("webhook: dial %s: %w", address, ErrForbiddenAddress)
	}
	return nil
}

// notPublic are the special-purpose ranges (IANA's IPv4 and IPv6
// registries) that a webhook must never reach, besides what netip's
// predicates cover.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata (169.254.169.254)
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("::/128"),          // unspecified
	netip.MustParsePrefix("::1/128"),         // loopback
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may embed any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo...)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed any IPv4 address
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),        // multicast
}

// IsPublic reports whether ip may be a webhook's address: a global unicast
// address outside every special-purpose range. An IPv4-mapped IPv6 address
// (::ffff:127.0.0.1) is judged as the IPv4 address it maps; a zoned one is
// never public.
func IsPublic(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
