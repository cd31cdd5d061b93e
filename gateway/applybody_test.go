package gateway

import (
	"strings"
	"testing"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

func TestEmptyUsageIsLeftOut(t *testing.T) {
	b, err := ownedStatus{Usage: &v1.Usage{}, Progress: &v1.Progress{Turn: 1}}.applyBody()
	if err != nil || strings.Contains(string(b), "usage") {
		t.Errorf("zero usage: %s, %v", b, err)
	}
	b, _ = ownedStatus{Usage: &v1.Usage{ToolCalls: 1}}.applyBody()
	if !strings.Contains(string(b), `"usage":{"toolCalls":1}`) {
		t.Errorf("non-zero usage: %s", b)
	}
}
