package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// The web tools' connections. The gateway resolves the host itself, checks
// every address, and dials the address it checked: a host name whose DNS
// answer changes between the check and the connection (DNS rebinding) cannot
// lead anywhere else. No proxy from the environment is used, since a proxy
// would make the address the gateway checked irrelevant.

// blockedAddressError is a host that resolves to an address the web tools
// may not reach.
type blockedAddressError struct {
	host  string
	addr  netip.Addr
	class string
}

func (e *blockedAddressError) Error() string {
	if e.host == e.addr.String() {
		return fmt.Sprintf("%s is a %s address, which the gateway does not fetch from", e.host, e.class)
	}
	return fmt.Sprintf("%s resolves to %s, a %s address, which the gateway does not fetch from", e.host, e.addr, e.class)
}

// Special-purpose ranges the netip predicates do not name.
var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	benchmark = netip.MustParsePrefix("198.18.0.0/15")
	reserved  = netip.MustParsePrefix("240.0.0.0/4")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// addressClass names why addr is not an ordinary public address ("" when it
// is), and whether it is "internal" (private, loopback, CGNAT: reachable with
// AllowPrivateAddresses) rather than never reachable (link-local, which holds
// the cloud metadata endpoint, multicast, unspecified, reserved).
func addressClass(addr netip.Addr) (class string, internal bool) {
	addr = addr.Unmap()
	// An IPv6 address embedding an IPv4 one reaches that one through a
	// translator: judge the embedded address.
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[12:16]))
	} else if sixToFour.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[2:6]))
	}
	switch {
	case addr.IsUnspecified() || thisNet.Contains(addr):
		return "unspecified", false
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		return "link-local", false
	case addr.IsMulticast() || addr.IsInterfaceLocalMulticast():
		return "multicast", false
	case reserved.Contains(addr) || benchmark.Contains(addr):
		return "reserved", false
	case addr.IsLoopback():
		return "loopback", true
	case addr.IsPrivate():
		return "private", true
	case cgnat.Contains(addr):
		return "shared (CGNAT)", true
	}
	return "", false
}

// allowedAddress says whether a web tool may connect to addr. internalOK
// admits private, loopback and CGNAT addresses; nothing admits link-local,
// multicast or unspecified ones.
func allowedAddress(addr netip.Addr, internalOK bool) (string, bool) {
	class, internal := addressClass(addr)
	return class, class == "" || (internal && internalOK)
}

// resolve returns the addresses of host, through the configured resolver.
func (s *Server) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if s.cfg.WebFetchResolve != nil {
		return s.cfg.WebFetchResolve(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// webTransport returns a transport that dials only checked addresses. For
// web_search, internal addresses are always allowed: the platform configured
// the endpoint, and it is often a service in the cluster.
func (s *Server) webTransport(search bool) *http.Transport {
	internalOK := search || s.cfg.WebFetchAllowPrivateAddresses
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(hostport)
			if err != nil {
				return nil, err
			}
			addrs, err := s.resolve(ctx, host)
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", host, err)
			}
			if len(addrs) == 0 {
				return nil, fmt.Errorf("resolving %s: no addresses", host)
			}
			// Every address must pass, not just the one dialled: a name that
			// also resolves to an internal address is refused outright.
			for _, a := range addrs {
				if class, ok := allowedAddress(a, internalOK); !ok {
					return nil, &blockedAddressError{host: host, addr: a.Unmap(), class: class}
				}
			}
			var errs []error
			for _, a := range addrs {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, fmt.Errorf("connecting to %s: %w", host, errs[0])
		},
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  webTimeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}
