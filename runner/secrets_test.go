package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/transcript"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// planted are credentials in the shapes that leak in practice.
var planted = map[string]string{
	"openai":      "sk-proj-Abc123def456GHI789jkl012MNO345pqr678",
	"github":      "ghp_1234567890abcdefghijABCDEFGHIJ123456",
	"github-pat":  "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS",
	"aws-id":      "AKIAIOSFODNN7EXAMPLE",
	"aws-secret":  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	"bearer":      "abcdef0123456789abcdef0123456789",
	"slack":       "xoxb-123456789012-abcdefghijkl",
	"jwt":         "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU",
	"private-key": "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
	"db-password": "s3cr3t-db-pa55word",
	"runner-s3":   "runner-own-s3-secret-value-123",
}

func TestPlantedSecretsNeverReachTheTranscript(t *testing.T) {
	env := "OPENAI_API_KEY=" + planted["openai"] + "\n" +
		"GITHUB_TOKEN=" + planted["github"] + "\n" +
		"GH_PAT=" + planted["github-pat"] + "\n" +
		"AWS_ACCESS_KEY_ID=" + planted["aws-id"] + "\n" +
		"aws_secret_access_key = " + planted["aws-secret"] + "\n" +
		"CURL_HEADER=Authorization: Bearer " + planted["bearer"] + "\n" +
		"SLACK=" + planted["slack"] + "\n" +
		"SA_TOKEN=" + planted["jwt"] + "\n" +
		"DATABASE_URL=postgres://app:" + planted["db-password"] + "@db:5432/app\n"
	key := "-----BEGIN RSA PRIVATE KEY-----\n" + planted["private-key"] + "\nmore+key/material==\n-----END RSA PRIVATE KEY-----\n"
	files := map[string]string{".env": env, "deploy/id_rsa": key, "README.md": "nothing\n"}
	h := newHarness(t, files,
		scriptedllm.Tools(
			call("read_file", map[string]any{"path": ".env"}),
			call("read_file", map[string]any{"path": "deploy/id_rsa"}),
			call("grep", map[string]any{"pattern": "sk-|ghp_|AKIA"}),
		),
		scriptedllm.Tools(
			call("bash", map[string]any{"command": "cat .env deploy/id_rsa; echo " + planted["runner-s3"]}),
			// The model copies a secret into a file: the call's arguments are recorded too.
			call("write_file", map[string]any{"path": "config.txt", "content": "token=" + planted["github"] + "\n"}),
		),
		scriptedllm.Text("Found the key "+planted["openai"]+" and "+planted["aws-id"]+" in .env; rotate them."),
	)
	rec := transcript.NewRecorder(transcript.NewRedactor(apiKey, planted["runner-s3"]), nil, h.dir)
	h.loop.Transcript = rec
	res := h.run(context.Background())

	// The model did see the file contents (it needs them to work) ...
	if !strings.Contains(string(h.srv.Requests()[1].Raw), planted["aws-id"]) {
		t.Fatal("the model should have been sent the file content")
	}
	// ... but nothing recorded holds a secret in clear.
	var recorded strings.Builder
	for _, name := range []string{transcript.TranscriptFile, transcript.SummaryFile} {
		b, err := os.ReadFile(filepath.Join(h.dir.Path(), name))
		if err != nil {
			t.Fatal(err)
		}
		recorded.Write(b)
	}
	recorded.WriteString(res.Summary)
	all := recorded.String()
	for kind, s := range planted {
		if strings.Contains(all, s) {
			t.Errorf("%s secret %q reached the transcript", kind, s)
		}
	}
	if strings.Contains(all, apiKey) {
		t.Error("the runner's API key reached the transcript")
	}
	for _, marker := range []string{"[REDACTED:openai-key]", "[REDACTED:github-token]", "[REDACTED:aws-access-key]", "[REDACTED:private-key]", "Bearer [REDACTED:bearer-token]", "[REDACTED:secret]", "[REDACTED:jwt]"} {
		if !strings.Contains(all, marker) {
			t.Errorf("transcript lacks %s", marker)
		}
	}
	if !strings.Contains(res.Summary, "Found the key [REDACTED:openai-key]") {
		t.Errorf("the final summary must be redacted too: %q", res.Summary)
	}
}

func TestRedactorLeavesOrdinaryTextAlone(t *testing.T) {
	r := transcript.NewRedactor("short", "")
	for _, s := range []string{
		"func TestSkipMe(t *testing.T) { t.Skip(\"sk-ip\") }",
		"the task-runner uses a bearer token from the environment",
		"AKIA is the prefix of AWS key ids",
		"short words stay",
		"https://github.com/org/repo.git",
	} {
		if got := r.String(s); got != s {
			t.Errorf("Redact(%q) = %q", s, got)
		}
	}
}
