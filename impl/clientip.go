package impl

import (
	"net"

	"github.com/labstack/echo/v4"
)

// clientIP returns echo's extractor of the client address: the direct peer,
// or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one (echo walks the header from the right and
// stops at the first untrusted address; an unparsable entry yields the
// peer). Echo trusts loopback, link-local and private addresses by default;
// only the configured ranges are trusted here.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, r := range trusted {
		opts = append(opts, echo.TrustIPRange(r))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
