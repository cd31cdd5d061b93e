//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestShareLinkServesTheTranscriptUntilItExpires: a link from `kubectl agentry share` fetches
// the archived transcript with no credentials at all (from this host, through the console's
// node port), stops at its expiry with a clear page and no data, and a user without RBAC on
// shares cannot make one.
func TestShareLinkServesTheTranscriptUntilItExpires(t *testing.T) {
	name := "shared"
	applySession(t, name, "[e2e:success]", "")
	eventually(t, 2*time.Minute, "the session archived", func() bool {
		s := getSession(t, name)
		return s.Status.Phase == v1.PhaseSucceeded && meta.IsStatusConditionTrue(s.Status.Conditions, v1.ConditionArchived)
	})

	// Someone without RBAC on shares gets the apiserver's Forbidden, through kubectl's plugin
	// mechanism with kubectl's own --as flag.
	out, err := kubectlPlugin("agentry", "-n", namespace, "--as=system:serviceaccount:"+namespace+":nobody", "share", name)
	if err == nil || !strings.Contains(out, "forbidden") {
		t.Fatalf("a user without RBAC made a share: %v\n%s", err, out)
	}

	out, err = kubectlPlugin("agentry", "-n", namespace, "share", name, "--expires", "1m", "--visibility", "link")
	if err != nil {
		t.Fatalf("kubectl agentry share: %v\n%s", err, out)
	}
	first := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if len(first) != 2 || !strings.HasPrefix(first[1], "http") {
		t.Fatalf("kubectl agentry share printed %q", out)
	}
	shareName := strings.TrimPrefix(strings.TrimSuffix(first[0], ":"), "agentsessionshare/")
	link := first[1]
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsessionshare", shareName, "--ignore-not-found") }) //nolint:errcheck
	expires, err := kubectl("-n", namespace, "get", "agentsessionshare", shareName, "-o", "jsonpath={.status.expiresAt}")
	if err != nil {
		t.Fatal(err)
	}

	s := getSession(t, name)
	code, body := fetch(t, link+"transcript.jsonl")
	if code != 200 || !strings.Contains(body, `"type":"finish"`) || int64(strings.Count(body, "\n")) != s.Status.Transcript.Events {
		t.Fatalf("transcript through the link: %d, %d lines (status says %d events)\n%.300s", code, strings.Count(body, "\n"), s.Status.Transcript.Events, body)
	}
	if code, body := fetch(t, link); code != 200 || !strings.Contains(strings.ToLower(body), "<!doctype html") {
		t.Fatalf("the page: %d %.200s", code, body)
	}

	// Someone who cannot reach the console's address reads it through the API server's
	// service proxy, as an ordinary authenticated user with RBAC on sessions and shares in
	// this namespace only (the chart's Role lets authenticated users through the proxy).
	if _, err := kubectlIn(manifest(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: %s}
rules:
- {apiGroups: [agentry.dev], resources: [agentsessions], verbs: [get, list, watch]}
- {apiGroups: [agentry.dev], resources: [agentsessionshares], verbs: [get, list, watch, create, delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: %s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: reader}]`, namespace, namespace), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	out, err = kubectlPlugin("agentry", "-n", namespace, "--as=reader", "--as-group=system:authenticated",
		"--console-via-apiserver", "agentry-system/agentry-console", "transcript", name, "--format", "json")
	if err != nil || !strings.Contains(out, `"type":"finish"`) {
		t.Fatalf("transcript through the API server's service proxy: %v\n%.500s", err, out)
	}

	// After its expiry: a clear page, never data.
	at, err := time.Parse(time.RFC3339, expires)
	if err != nil {
		t.Fatalf("status.expiresAt %q: %v", expires, err)
	}
	time.Sleep(time.Until(at) + 2*time.Second) // the link's lifetime is the point of the test
	code, body = fetch(t, link+"transcript.jsonl")
	if code != http.StatusGone || !strings.Contains(body, "This link has expired") || strings.Contains(body, `"seq"`) {
		t.Fatalf("expired link: %d %.300s", code, body)
	}
	eventually(t, 30*time.Second, "the share to say it expired", func() bool {
		r, _ := kubectl("-n", namespace, "get", "agentsessionshare", shareName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
		return r == "Expired"
	})
}

// TestLogsFollowsARunningSession: `kubectl agentry logs -f`, started as the session is
// created, waits for the pod, streams the runner's step lines as they come and ends with the
// session; afterwards, with the pod gone, it reads the archived transcript instead.
func TestLogsFollowsARunningSession(t *testing.T) {
	name := "followed"
	applySession(t, name, "[e2e:success]", "")
	out, err := kubectlPlugin("agentry", "-n", namespace, "logs", "-f", name)
	if err != nil {
		t.Fatalf("kubectl agentry logs -f: %v\n%s", err, out)
	}
	for _, want := range []string{"turn 1", "list_dir", "write_file NOTES.md", "Completed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("logs -f lacks %q:\n%s", want, out)
		}
	}
	kubectl("-n", namespace, "delete", "pod", name+"-runner", "--wait=true") //nolint:errcheck
	eventually(t, time.Minute, "the session archived", func() bool {
		return meta.IsStatusConditionTrue(getSession(t, name).Status.Conditions, v1.ConditionArchived)
	})
	out, err = kubectlPlugin("agentry", "-n", namespace, "logs", name)
	if err != nil || !strings.Contains(out, "write_file") {
		t.Fatalf("logs of a session whose pod is gone: %v\n%s", err, out)
	}
}
