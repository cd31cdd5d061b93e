package controllers

import (
	"strings"
	"testing"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

func TestPullRequestTemplates(t *testing.T) {
	data := PullRequestData{Namespace: "team-a", Name: "fix", Task: "Fix Add.\nIt subtracts.", Summary: "Fixed Add.\n\nIt adds now.",
		FilesChanged: 2, Additions: 3, Deletions: 1, Tokens: 4242, Model: "gpt-4.1", Commit: "abc123", Transcript: "s3://b/k/transcript.jsonl"}
	title, body, err := renderPullRequest(&v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{}}, data)
	if err != nil {
		t.Fatal(err)
	}
	if title != "Fixed Add." {
		t.Errorf("default title = %q", title)
	}
	for _, want := range []string{"Fixed Add.\n\nIt adds now.", "`team-a/fix`", "2 (+3 −1)", "4242 (gpt-4.1)", "abc123", "s3://b/k/transcript.jsonl", "> Fix Add.\n> It subtracts."} {
		if !strings.Contains(body, want) {
			t.Errorf("default body lacks %q:\n%s", want, body)
		}
	}

	// A summary the model made up: its first line only, bounded, no newline into the title.
	long := PullRequestData{Summary: strings.Repeat("é", 400) + "\nsecond line", Namespace: "n", Name: "s"}
	title, _, err = renderPullRequest(&v1.DeliverySpec{Push: &v1.PushDelivery{}}, long)
	if err != nil {
		t.Fatal(err)
	}
	if len(title) > maxTitle || strings.Contains(title, "\n") || !strings.HasPrefix(title, "éé") || strings.ContainsRune(title, '\uFFFD') {
		t.Errorf("title of a long summary = %q (%d bytes)", title, len(title))
	}
	title, _, _ = renderPullRequest(&v1.DeliverySpec{Push: &v1.PushDelivery{}}, PullRequestData{Namespace: "n", Name: "s"})
	if title != "Agentry session n/s" {
		t.Errorf("title with no summary or task = %q", title)
	}

	custom := &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{
		Title: "agentry: {{ firstLine .Task | lower }}",
		Body:  "{{ if gt1 }}{{ end }}",
	}}
	if _, _, err := renderPullRequest(custom, data); err == nil || !strings.Contains(err.Error(), "spec.delivery.pullRequest.body") {
		t.Errorf("unknown function: err = %v, want it to name the body", err)
	}
	custom.PullRequest.Body = "{{ .Summary }} — {{ .FilesChanged }} files{{ with .Model }} by {{ . }}{{ end }}"
	title, body, err = renderPullRequest(custom, data)
	if err != nil || title != "agentry: fix add." || body != "Fixed Add.\n\nIt adds now. — 2 files by gpt-4.1" {
		t.Errorf("custom templates = %q, %q, %v", title, body, err)
	}

	refused := map[string]string{
		"a loop":              "{{ range 1000000000000 }}{{ end }}",
		"an unbounded printf": `{{ printf "%0999999999d" 1 }}`,
		"a template call":     `{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}`,
		"call":                "{{ call .Summary }}",
		"a missing field":     "{{ .Secret }}",
		"a parse error":       "{{ .Summary ",
	}
	for name, body := range refused {
		t.Run(name, func(t *testing.T) {
			_, _, err := renderPullRequest(&v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Body: body}}, data)
			if err == nil || !strings.Contains(err.Error(), "spec.delivery.pullRequest.body") {
				t.Fatalf("err = %v, want a refusal naming the body", err)
			}
		})
	}

	// Output is bounded whatever the data.
	huge := PullRequestData{Summary: strings.Repeat("x", 200000)}
	_, body, err = renderPullRequest(&v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Body: "{{ .Summary }}{{ .Summary }}"}}, huge)
	if err != nil || len(body) != maxBody {
		t.Errorf("body of a huge summary: %d bytes, %v", len(body), err)
	}
}

func TestDeliveryPolicy(t *testing.T) {
	s := &v1.AgentSession{Spec: v1.AgentSessionSpec{Repository: v1.RepositorySpec{URL: "https://GitHub.com/acme/service.git"}}}
	s.Namespace = "team-a"
	pol := func(d *v1.DeliveryPolicy) v1.AgentPolicy {
		return v1.AgentPolicy{Spec: v1.AgentPolicySpec{Delivery: d}}
	}
	cases := map[string]struct {
		pols []v1.AgentPolicy
		want string
	}{
		"no policy":                 {nil, "no AgentPolicy in namespace team-a allows delivery"},
		"a policy without delivery": {[]v1.AgentPolicy{pol(nil)}, "no AgentPolicy"},
		"delivery allowed":          {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{})}, ""},
		"repository matches":        {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{AllowedRepositories: []string{"github.com/acme/*"}})}, ""},
		"star does not cross slash": {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{AllowedRepositories: []string{"github.com/*"}})}, "allowedRepositories"},
		"other owner":               {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{AllowedRepositories: []string{"github.com/acme-evil/*"}})}, "allowedRepositories"},
		"provider not listed":       {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{AllowedGitProviders: []string{"gitea"}})}, "does not allow GitProvider github"},
		"strictest of two policies": {[]v1.AgentPolicy{pol(&v1.DeliveryPolicy{}), pol(&v1.DeliveryPolicy{AllowedGitProviders: []string{"gitea"}})}, "does not allow GitProvider"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := deliveryPolicyViolation(tc.pols, s, "github")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("violation = %q, want %q", got, tc.want)
			}
		})
	}
}
