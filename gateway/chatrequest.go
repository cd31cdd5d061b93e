package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// chatRequest is a chat-completions body with each top-level field kept as the client
// sent it. The proxy reads and rewrites the few fields it governs (model, n, max_tokens,
// stream, stream_options) and forwards the rest as they came, without decoding and
// re-encoding the messages and tools, the bulk of every call.
type chatRequest map[string]json.RawMessage

// decodeChatRequest reads one JSON object.
func decodeChatRequest(r io.Reader) (chatRequest, error) {
	var c chatRequest
	if err := json.NewDecoder(r).Decode(&c); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, errors.New("the body must be a JSON object")
	}
	return c, nil
}

// present says whether the field is there and not null.
func (c chatRequest) present(k string) bool {
	v, ok := c[k]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// text is the field's value when it is a string, else "".
func (c chatRequest) text(k string) string {
	var s string
	if v, ok := c[k]; ok && json.Unmarshal(v, &s) == nil {
		return s
	}
	return ""
}

// flag is the field's value when it is a boolean, else false.
func (c chatRequest) flag(k string) bool {
	var b bool
	if v, ok := c[k]; ok && json.Unmarshal(v, &b) == nil {
		return b
	}
	return false
}

// number is the field's value when it is a number; ok is false for anything else.
func (c chatRequest) number(k string) (f float64, ok bool) {
	v, found := c[k]
	return f, found && json.Unmarshal(v, &f) == nil
}

// set replaces the field with v encoded.
func (c chatRequest) set(k string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the proxy's own values of plain types are set
	}
	c[k] = b
}

// size is the length of the fields' JSON as sent.
func (c chatRequest) size(keys ...string) int {
	n := 0
	for _, k := range keys {
		n += len(c[k])
	}
	return n
}

// includeUsage asks a stream for its usage chunk, keeping the client's other stream options.
func (c chatRequest) includeUsage() {
	var so map[string]json.RawMessage
	if v, ok := c["stream_options"]; !ok || json.Unmarshal(v, &so) != nil || so == nil {
		so = map[string]json.RawMessage{}
	}
	so["include_usage"] = json.RawMessage("true")
	c.set("stream_options", so)
}

// encode writes the body to forward: every field as it came except those set.
func (c chatRequest) encode() []byte {
	n := 2
	for k, v := range c {
		n += len(k) + len(v) + 4
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '{')
	first := true
	for k, v := range c {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		key, _ := json.Marshal(k) // a string always encodes
		buf = append(buf, key...)
		buf = append(buf, ':')
		buf = append(buf, v...)
	}
	return append(buf, '}')
}

// textOnly refuses message content the prompt estimate cannot bound: an image, audio or
// file part costs the provider hundreds to thousands of tokens for a few bytes of URL, so
// a call made of them could pass a budget many times over. The runner sends text only.
func (c chatRequest) textOnly() error {
	raw, ok := c["messages"]
	if !ok {
		return nil
	}
	var msgs []struct {
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	for i, m := range msgs {
		if t := bytes.TrimSpace(m.Content); len(t) == 0 || t[0] != '[' {
			continue // a string, null or absent
		}
		var parts []struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(m.Content, &parts); err != nil {
			return fmt.Errorf("messages[%d].content: %w", i, err)
		}
		for j, p := range parts {
			if p.Type != "text" && p.Type != "refusal" {
				return fmt.Errorf("messages[%d].content[%d] has type %q: the gateway budgets text only (type text)", i, j, p.Type)
			}
		}
	}
	return nil
}
