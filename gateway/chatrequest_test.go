package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// The proxy forwards what the client sent, except the fields it governs: the model, the
// output bound and, on a stream, the usage chunk it needs for accounting.
func TestChatRequestForwardsTheClientsFieldsAndRewritesTheGovernedOnes(t *testing.T) {
	in := `{"model":"cheap","messages":[{"role":"user","content":"<b>hi</b> é"}],"stream":true,` +
		`"stream_options":{"chunk":1},"max_tokens":100000,"temperature":0.2,"x_vendor":{"a":[1,2]}}`
	body, err := decodeChatRequest(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	sess := &v1.AgentSession{}
	if _, output, err := boundRequest(sess, body); err != nil || output != DefaultMaxOutputTokens {
		t.Fatalf("bound = %d, %v; want the default cap", output, err)
	}
	body.set("model", "gpt-test")
	setOutput(body, 500)
	if !body.flag("stream") {
		t.Fatal("stream not seen")
	}
	body.includeUsage()
	var got, want map[string]any
	if err := json.Unmarshal(body.encode(), &got); err != nil {
		t.Fatalf("forwarded body is not JSON: %v\n%s", err, body.encode())
	}
	_ = json.Unmarshal([]byte(`{"model":"gpt-test","messages":[{"role":"user","content":"<b>hi</b> é"}],"stream":true,`+
		`"stream_options":{"chunk":1,"include_usage":true},"max_tokens":500,"temperature":0.2,"x_vendor":{"a":[1,2]}}`), &want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("forwarded body (-want +got):\n%s", d)
	}
}

// What a client cannot get past the proxy: more than one choice, an output bound that is
// not a positive integer, a body that is not an object.
func TestChatRequestRefusals(t *testing.T) {
	cases := map[string]string{
		"n=5":                `{"n":5}`,
		"n as a string":      `{"n":"1"}`,
		"max_tokens 0":       `{"max_tokens":0}`,
		"max_tokens 1.5":     `{"max_tokens":1.5}`,
		"max_tokens string":  `{"max_tokens":"100"}`,
		"max_completion -1":  `{"max_completion_tokens":-1}`,
		"max_tokens object":  `{"max_tokens":{}}`,
		"max_tokens as bool": `{"max_tokens":true}`,
	}
	for name, in := range cases {
		body, err := decodeChatRequest(strings.NewReader(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := boundRequest(&v1.AgentSession{}, body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, in := range []string{`null`, `[]`, `"x"`, `{`} {
		if _, err := decodeChatRequest(strings.NewReader(in)); err == nil {
			t.Errorf("body %s: accepted", in)
		}
	}
	// null means absent, as before.
	body, _ := decodeChatRequest(strings.NewReader(`{"n":null,"max_tokens":null,"max_completion_tokens":40}`))
	if _, output, err := boundRequest(&v1.AgentSession{}, body); err != nil || output != 40 {
		t.Errorf("nulls: output %d, %v; want 40", output, err)
	}
}
