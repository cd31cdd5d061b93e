package testutil

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatusOwners returns, for each manager/operation that wrote the status subresource of an
// object with these managedFields, the status fields it owns, as paths such as "phase",
// "result.exitCode" and "conditions[Succeeded]".
func StatusOwners(t testing.TB, managed []metav1.ManagedFieldsEntry) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, e := range managed {
		if e.Subresource != "status" || e.FieldsV1 == nil {
			continue
		}
		var tree map[string]any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &tree); err != nil {
			t.Fatal(err)
		}
		st, _ := tree["f:status"].(map[string]any)
		key := e.Manager + "/" + string(e.Operation)
		if out[key] == nil {
			out[key] = map[string]bool{}
		}
		statusLeaves(st, "", out[key])
	}
	return out
}

// statusLeaves collects the owned leaves of a managedFields tree; an entry of a list map
// (a condition) counts as one leaf named by its key.
func statusLeaves(node map[string]any, prefix string, into map[string]bool) {
	for k, v := range node {
		if k == "." {
			continue
		}
		if strings.HasPrefix(k, "k:") {
			var key map[string]any
			_ = json.Unmarshal([]byte(strings.TrimPrefix(k, "k:")), &key)
			into[strings.TrimSuffix(prefix, ".")+fmt.Sprintf("[%v]", key["type"])] = true
			continue
		}
		name := strings.TrimPrefix(k, "f:")
		child, _ := v.(map[string]any)
		if len(child) == 0 || (len(child) == 1 && child["."] != nil) {
			into[prefix+name] = true
			continue
		}
		statusLeaves(child, prefix+name+".", into)
	}
}

// SortedKeys is m's keys in order.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AssertDisjoint fails when two managers own the same status field.
func AssertDisjoint(t testing.TB, owners map[string]map[string]bool) {
	t.Helper()
	seen := map[string]string{}
	for _, m := range SortedKeys(owners) {
		for f := range owners[m] {
			if other, ok := seen[f]; ok {
				t.Errorf("status.%s is owned by both %s and %s", f, other, m)
			}
			seen[f] = m
		}
	}
}
