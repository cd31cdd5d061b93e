package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWebToolSchemasAndArguments(t *testing.T) {
	want := map[string]string{
		"web_fetch":  `{"type":"object","properties":{"url":{"type":"string","maxLength":2048,"description":"The http or https URL of the page"}},"required":["url"],"additionalProperties":false}`,
		"web_search": `{"type":"object","properties":{"query":{"type":"string","maxLength":1024,"description":"Search terms"}},"required":["query"],"additionalProperties":false}`,
	}
	for _, tool := range Web(nil) {
		var got, exp map[string]any
		if err := json.Unmarshal(tool.Schema(), &got); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(want[tool.Name()]), &exp)
		if diff := cmp.Diff(exp, got); diff != "" {
			t.Errorf("%s schema (-want +got):\n%s", tool.Name(), diff)
		}
		if tool.Kind() != KindRead || tool.Description() == "" {
			t.Errorf("%s: kind %v, description %q", tool.Name(), tool.Kind(), tool.Description())
		}
	}
	// A case-variant key is refused before anything is sent: the gateway sees only what
	// the schema describes.
	_, err := (&WebFetch{}).Execute(context.Background(), json.RawMessage(`{"URL":"http://x.test/"}`))
	if err == nil || !strings.Contains(err.Error(), "invalid arguments for web_fetch") {
		t.Errorf("case-variant key: %v", err)
	}
	_, err = (&WebFetch{}).Execute(context.Background(), json.RawMessage(`{"url":"http://x.test/"}`))
	if err == nil || !strings.Contains(err.Error(), "need the session gateway") {
		t.Errorf("without a gateway: %v", err)
	}
}

func TestSplitWebKeepsTheOrder(t *testing.T) {
	others, web := SplitWeb([]string{"read_file", " web_search", "bash", "web_fetch"})
	if diff := cmp.Diff([]string{"read_file", "bash"}, others); diff != "" {
		t.Errorf("others: %s", diff)
	}
	if diff := cmp.Diff([]string{"web_search", "web_fetch"}, web); diff != "" {
		t.Errorf("web: %s", diff)
	}
}
