// Package audit starts the benchmarks' kube-apiserver with an audit log of every write
// and reads that log back, so a benchmark counts the writes each client made (and how
// many were refused) at the apiserver's door.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/test/controlplane"
)

// policy records every create, update, patch and delete at the Metadata level, nothing else.
const policy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete]
- level: None
`

// Start starts a control plane whose apiserver writes the audit log into dir, and returns
// the log's path.
func Start(dir string) (*controlplane.Env, string, error) {
	policyFile, log := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return nil, "", err
	}
	env, err := controlplane.StartWith(controlplane.Options{APIServerArgs: map[string]string{
		"audit-policy-file": policyFile, "audit-log-path": log,
	}})
	return env, log, err
}

// Event is the part of an audit event the benchmarks read.
type Event struct {
	Verb           string    `json:"verb"`
	UserAgent      string    `json:"userAgent"`
	RequestURI     string    `json:"requestURI"`
	StageTimestamp time.Time `json:"stageTimestamp"`
	ObjectRef      struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// Resource is the resource written, with its subresource: "agentsessions/status".
func (e *Event) Resource() string {
	if e.ObjectRef.Subresource != "" {
		return e.ObjectRef.Resource + "/" + e.ObjectRef.Subresource
	}
	return e.ObjectRef.Resource
}

// FieldManager is the request's fieldManager parameter, if any.
func (e *Event) FieldManager() string {
	if u, err := url.Parse(e.RequestURI); err == nil {
		return u.Query().Get("fieldManager")
	}
	return ""
}

// Each calls f with every event of the log at path, in order.
func Each(path string, f func(*Event)) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("reading the audit log %s: %w", path, err)
		}
		f(&ev)
	}
	return sc.Err()
}

// Agent is the client name of a user agent ("agentry-manager/v0.1 (linux/amd64)" is
// "agentry-manager").
func Agent(userAgent string) string {
	who, _, _ := strings.Cut(userAgent, "/")
	return who
}
