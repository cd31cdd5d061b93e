package gateway

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
)

func rulesOf(entries ...string) []domainRule {
	var out []domainRule
	for _, e := range entries {
		if r, ok := parseDomainRule(e); ok {
			out = append(out, r)
		}
	}
	return out
}

func TestCheckFetchURLMatchesDomainsAtLabelBoundaries(t *testing.T) {
	rules := rulesOf("Example.com", "bücher.de", "docs.internal.test:8443", "10.0.0.5", "[fd00::5]", "https://bad.entry/path", "*.wild.test")
	cases := map[string]struct {
		url   string
		allow bool
		host  string // the normalised host sent, when allowed
	}{
		"the domain":                       {"https://example.com/a", true, "example.com"},
		"a subdomain":                      {"https://docs.example.com/a", true, "docs.example.com"},
		"upper case and a trailing dot":    {"https://DOCS.EXAMPLE.COM./a", true, "docs.example.com"},
		"the default port spelled out":     {"https://example.com:443/a", true, "example.com"},
		"a suffix without a dot":           {"https://badexample.com/", false, ""},
		"the domain inside another":        {"https://example.com.evil.test/", false, ""},
		"another port":                     {"https://example.com:8443/", false, ""},
		"an IDN in Unicode":                {"https://www.bücher.de/", true, "www.xn--bcher-kva.de"},
		"an IDN in punycode":               {"https://xn--bcher-kva.de/", true, "xn--bcher-kva.de"},
		"a look-alike IDN":                 {"https://bucher.de/", false, ""},
		"the entry's port":                 {"http://docs.internal.test:8443/", true, "docs.internal.test:8443"},
		"the entry's host without port":    {"https://docs.internal.test/", false, ""},
		"an address entry matches itself":  {"http://10.0.0.5/", true, "10.0.0.5"},
		"an address is no subdomain":       {"http://1.10.0.0.5/", false, ""},
		"an IPv6 address entry":            {"http://[fd00::5]/", true, "[fd00::5]"},
		"a URL entry matches nothing":      {"https://bad.entry/path", false, ""},
		"a wildcard entry matches nothing": {"https://a.wild.test/", false, ""},
		"credentials":                      {"https://user@example.com/", false, ""},
		"ftp":                              {"ftp://example.com/", false, ""},
		"userinfo naming an allowed host":  {"http://example.com@evil.test/", false, ""},
		"a backslash before the at":        {"http://evil.test\\@example.com/", false, ""},
		"an allowed host in the fragment":  {"http://evil.test#@example.com/", false, ""},
		"an escaped NUL in the host":       {"http://example.com%00.evil.test/", false, ""},
		"an upper-case scheme":             {"HTTPS://EXAMPLE.COM/", true, "example.com"},
	}
	for name, tc := range cases {
		u, err := checkFetchURL(tc.url, rules)
		if (err == nil) != tc.allow {
			t.Errorf("%s: checkFetchURL(%q) error = %v, want allowed %v", name, tc.url, err, tc.allow)
			continue
		}
		if err == nil && u.Host != tc.host {
			t.Errorf("%s: host = %q, want %q", name, u.Host, tc.host)
		}
	}
}

func TestAddressClassRefusesEveryWayIntoTheNetwork(t *testing.T) {
	cases := map[string]struct {
		class    string
		internal bool
	}{
		"93.184.216.34":          {"", false},
		"2606:2800:220:1::1":     {"", false},
		"127.0.0.1":              {"loopback", true},
		"::1":                    {"loopback", true},
		"10.0.0.1":               {"private", true},
		"172.16.3.4":             {"private", true},
		"192.168.1.1":            {"private", true},
		"fd00::1":                {"private", true},
		"100.64.0.1":             {"shared (CGNAT)", true},
		"169.254.169.254":        {"link-local", false},
		"fe80::1":                {"link-local", false},
		"::ffff:169.254.169.254": {"link-local", false},
		"64:ff9b::a9fe:a9fe":     {"link-local", false}, // NAT64 of 169.254.169.254
		"2002:7f00:1::":          {"loopback", true},    // 6to4 of 127.0.0.1
		"0.0.0.0":                {"unspecified", false},
		"0.1.2.3":                {"unspecified", false},
		"::":                     {"unspecified", false},
		"239.1.2.3":              {"multicast", false},
		"ff02::1":                {"link-local", false},
		"255.255.255.255":        {"reserved", false},
	}
	for addr, want := range cases {
		class, internal := addressClass(netip.MustParseAddr(addr))
		if class != want.class || internal != want.internal {
			t.Errorf("addressClass(%s) = %q, %v; want %q, %v", addr, class, internal, want.class, want.internal)
		}
	}
	if _, ok := allowedAddress(netip.MustParseAddr("169.254.169.254"), true); ok {
		t.Error("the metadata address is allowed with private addresses allowed")
	}
}

func TestUnionWebPolicy(t *testing.T) {
	pol := unionWebPolicy([]v1.AgentPolicy{
		{Spec: v1.AgentPolicySpec{WebFetch: &v1.WebFetchPolicy{AllowedDomains: []string{"b.test"}, MaxBytes: ptr.To[int32](50000), SearchURL: "http://second"}}},
		{Spec: v1.AgentPolicySpec{}},
		{Spec: v1.AgentPolicySpec{WebFetch: &v1.WebFetchPolicy{AllowedDomains: []string{"a.test"}, MaxBytes: ptr.To[int32](200000)}}},
	})
	if len(pol.domains) != 2 || pol.maxBytes != 50000 || pol.searchURL != "http://second" {
		t.Errorf("union = %+v; want both domains, the smallest maxBytes and the only searchURL", pol)
	}
	if def := unionWebPolicy(nil); def.maxBytes != defaultWebMaxBytes || len(def.domains) != 0 {
		t.Errorf("no policy = %+v", def)
	}
}

func TestCapTextCutsOnACharacterBoundary(t *testing.T) {
	text, cut := capText(strings.Repeat("é", 3000), 1025, false)
	head, _, _ := strings.Cut(text, "\n\n[truncated")
	if !cut || len(head) > 1025 || !strings.HasPrefix(text, "éé") || strings.ContainsRune(head, '\uFFFD') {
		t.Errorf("capText: cut %v, head of %d bytes", cut, len(head))
	}
}

func TestWebLimiterBoundsASessionsCalls(t *testing.T) {
	l := &webLimiter{buckets: map[types.UID]*bucket{}}
	now := time.Unix(1700000000, 0)
	for i := range webCallsPerMinute {
		if _, ok := l.take("a", now); !ok {
			t.Fatalf("call %d refused", i+1)
		}
	}
	wait, ok := l.take("a", now)
	if ok || wait <= 0 || wait > 2*time.Second {
		t.Errorf("call %d: ok %v, wait %s; want refused for about a second", webCallsPerMinute+1, ok, wait)
	}
	if _, ok := l.take("b", now); !ok {
		t.Error("another session was refused")
	}
	if _, ok := l.take("a", now.Add(time.Second)); !ok {
		t.Error("refused a second later")
	}
}

func TestPageTextDecodesAndSurvivesHostileHTML(t *testing.T) {
	base, _ := url.Parse("https://docs.example.test/a/")
	latin1 := []byte("<p>caf\xe9 cr\xe8me</p>")
	if got := pageText(latin1, "text/html", "iso-8859-1", base); !strings.Contains(got, "café crème") {
		t.Errorf("ISO-8859-1 page = %q", got)
	}
	if got := pageText([]byte("ok \xff\xfe"), "text/plain", "", base); !strings.HasPrefix(got, "ok ") || !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8 passed through: %q", got)
	}
	// Nesting deep enough to exhaust a recursive walker is refused by the parser, with a note.
	deep := strings.Repeat("<div>", 100000)
	if got := pageText([]byte(deep), "text/html", "", base); !strings.Contains(got, "could not be read") {
		t.Errorf("deeply nested page = %q", display.Truncate(got, 200))
	}
	links := `<a href="../b">up</a> <a href="javascript:alert(1)">js</a> <a href="#x">here</a>`
	if got := pageText([]byte(links), "text/html", "", base); !strings.Contains(got, "[up](https://docs.example.test/b)") || strings.Contains(got, "javascript") {
		t.Errorf("links = %q", got)
	}
}
