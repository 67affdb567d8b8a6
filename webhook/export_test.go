package webhook

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
)

// NewTestClient is NewClient with the dial of checked addresses and the
// TLS configuration replaced.
func NewTestClient(o ClientOptions, dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConfig *tls.Config) *http.Client {
	o.dial, o.tls = dial, tlsConfig
	return NewClient(o)
}

// ControlPublic is the dialer's last check.
var ControlPublic = controlPublic
