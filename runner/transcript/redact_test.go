package transcript_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// capture is a sink that keeps everything it is handed.
type capture struct {
	events []contract.Event
	final  *transcript.Final
}

func (c *capture) Write(_ context.Context, batch []contract.Event) error {
	c.events = append(c.events, batch...)
	return nil
}

func (c *capture) Close(_ context.Context, final transcript.Final) (transcript.Stored, error) {
	c.final = &final
	return transcript.Stored{}, nil
}

var (
	b64Run = regexp.MustCompile(`[A-Za-z0-9+/_\-]{4,}`)
	hexRun = regexp.MustCompile(`[0-9A-Fa-f]{4,}`)
)

// recoverable reports whether an attacker reading text could get secret
// back, wholly or all but its first and last byte (the characters a base64
// stream shares with its neighbours may carry a few bits of those): as is,
// URL-unescaped, or by decoding any run of base64 or hex characters at any
// alignment. It knows nothing of how the redactor works.
func recoverable(text, secret string) bool {
	middle := secret[1 : len(secret)-1]
	found := func(b []byte) bool { return strings.Contains(string(b), middle) }
	if found([]byte(text)) {
		return true
	}
	for _, unescape := range []func(string) (string, error){url.QueryUnescape, url.PathUnescape} {
		if u, err := unescape(text); err == nil && found([]byte(u)) {
			return true
		}
	}
	for _, run := range b64Run.FindAllString(text, -1) {
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for off := range 4 {
				s := run[off:]
				if len(s)%4 == 1 {
					s = s[:len(s)-1] // a lone trailing character is never valid
				}
				if b, err := enc.DecodeString(s); err == nil && found(b) {
					return true
				}
			}
		}
	}
	for _, run := range hexRun.FindAllString(text, -1) {
		for off := range 2 {
			s := run[off:]
			if b, err := hex.DecodeString(s[:len(s)-len(s)%2]); err == nil && found(b) {
				return true
			}
		}
	}
	return false
}

// TestRecoverableFindsEveryEncoding checks the test's own oracle: without a
// redactor, every planted form must be seen as a leak.
func TestRecoverableFindsEveryEncoding(t *testing.T) {
	for name, text := range encodedOutputs(knownSecrets[0]) {
		if !recoverable(text, knownSecrets[0]) {
			t.Errorf("%s: the oracle misses the planted secret in %q", name, text)
		}
	}
}

// knownSecrets are values the runner knows: one with characters that URL
// escaping changes, one 8 bytes long (the shortest redacted).
var knownSecrets = []string{"s3cr3t/value+with=specials?x y~1", "K8sTok3n"}

// encodedOutputs returns tool outputs carrying secret the ways a command
// prints it: base64 inside longer streams at each of the three alignments,
// with either alphabet and with or without padding, hex of either case, and
// URL escaping.
func encodedOutputs(secret string) map[string]string {
	out := map[string]string{
		"plain":        "value: " + secret + "\n",
		"hex":          "xxd: 00ff" + hex.EncodeToString([]byte(secret)) + "0a\n",
		"upper hex":    "DUMP " + strings.ToUpper(hex.EncodeToString([]byte(secret))) + "\n",
		"query escape": "GET /login?user=a&token=" + url.QueryEscape(secret) + "&x=1\n",
		"path escape":  "GET /v1/keys/" + url.PathEscape(secret) + "/rotate\n",
		"base64 whole": "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(secret)) + "\n",
		"base64 raw":   "token=" + base64.RawStdEncoding.EncodeToString([]byte(secret)) + ";\n",
		"base64url":    "jwt-ish." + base64.URLEncoding.EncodeToString([]byte(secret)) + ".sig\n",
	}
	for lead := range 3 {
		for trail := range 3 {
			// A secret in the middle of a kubeconfig or a JSON document, as
			// `kubectl get secret -o yaml` or `base64 file` prints it.
			stream := []byte(strings.Repeat("H", 30+lead) + secret + strings.Repeat("T", 20+trail))
			out[fmt.Sprintf("base64 stream offset %d trail %d", lead, trail)] = "data: " + base64.StdEncoding.EncodeToString(stream) + "\n"
			out[fmt.Sprintf("base64url stream offset %d trail %d", lead, trail)] = "data: " + base64.RawURLEncoding.EncodeToString(stream) + "\n"
		}
	}
	return out
}

func TestEncodedSecretsReachNoSink(t *testing.T) {
	dir, err := transcript.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	rec := transcript.NewRecorder(transcript.NewRedactor(knownSecrets...), nil, dir, c)
	ctx := context.Background()
	var patch strings.Builder
	patch.WriteString("diff --git a/config.yaml b/config.yaml\n--- a/config.yaml\n+++ b/config.yaml\n@@ -1 +1,3 @@\n name: x\n")
	for _, secret := range knownSecrets {
		for name, output := range encodedOutputs(secret) {
			rec.Emit(contract.Event{Type: contract.EventToolResult, ToolResult: &contract.ToolResult{ID: "c1", Name: "bash", Output: output}})
			rec.Emit(contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{Source: "test", Message: name + ": " + output}})
		}
		// The model copied the secret into a file, in clear and encoded.
		fmt.Fprintf(&patch, "+token: %s\n+data: %s\n", secret, base64.StdEncoding.EncodeToString([]byte("k="+secret)))
	}
	final := transcript.Final{
		Patch:   []byte(patch.String()),
		Summary: contract.Summary{Outcome: contract.OutcomeCompleted, Message: "rotated " + knownSecrets[0]},
	}
	if _, err := rec.Close(ctx, final); err != nil {
		t.Fatal(err)
	}

	received := map[string]string{}
	for _, name := range []string{transcript.TranscriptFile, transcript.PatchFile, transcript.SummaryFile} {
		b, err := os.ReadFile(filepath.Join(dir.Path(), name))
		if err != nil {
			t.Fatal(err)
		}
		received["dir "+name] = string(b)
	}
	for _, ev := range c.events {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		received[fmt.Sprintf("capture event %d", ev.Seq)] = string(b)
	}
	if c.final == nil {
		t.Fatal("the capturing sink was not closed")
	}
	received["capture patch"] = string(c.final.Patch)
	summary, _ := json.Marshal(c.final.Summary)
	received["capture summary"] = string(summary)

	for where, text := range received {
		for _, secret := range knownSecrets {
			if recoverable(text, secret) {
				t.Errorf("%s: secret %q is recoverable from:\n%s", where, secret, text)
			}
		}
	}
	if !strings.Contains(received["dir "+transcript.PatchFile], "+token: [REDACTED:secret]") {
		t.Errorf("patch was not redacted in place:\n%s", received["dir "+transcript.PatchFile])
	}
	if string(final.Patch) != patch.String() {
		t.Error("Close modified the caller's patch")
	}
}

// TestRedactorLeavesOrdinaryTextAlone guards against over-redaction: text
// sharing a prefix or a few characters with a secret's encodings stays.
func TestRedactorLeavesOrdinaryTextAlone(t *testing.T) {
	r := transcript.NewRedactor(knownSecrets...)
	for _, s := range []string{
		"s3cr3t/value+with=specials?x y~",               // the secret minus its last byte
		"K8sTok3", "k8stok3n", "go test ./... ok 0.01s", // near misses
		base64.StdEncoding.EncodeToString([]byte("K8sTok")), // encoding of a prefix
		hex.EncodeToString([]byte("K8sTok3")),
	} {
		if got := r.String(s); got != s {
			t.Errorf("String(%q) = %q, want it unchanged", s, got)
		}
	}
}

func BenchmarkRedactToolOutput(b *testing.B) {
	r := transcript.NewRedactor("sk-proj-Abc123def456GHI789jkl012MNO345pqr678", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"AKIAIOSFODNN7EXAMPLE", "agentry-gateway-token-0123456789abcdef")
	// Typical tool output: source code and hex-ish build output, no secret.
	var src strings.Builder
	for i := 0; src.Len() < 32<<10; i++ {
		fmt.Fprintf(&src, "func step%d(ctx context.Context, n int) error { return fmt.Errorf(\"step %%d: %%w\", n, errStep) } // sum %08x\n", i, i*2654435761)
	}
	text := src.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		_ = r.String(text)
	}
}
