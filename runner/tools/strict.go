package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
)

// Canonical decodes a call's arguments strictly into the tool's argument type
// and encodes that value again. Approval, execution and the transcript all
// use the canonical form, so what a person approves is exactly what runs: a
// second spelling of a key ("Command" beside "command"), a duplicate key or a
// field the schema does not have is refused before anyone looks at the call.
func Canonical(t Tool, raw json.RawMessage) (json.RawMessage, error) {
	// A tool whose arguments have no Go type (an MCP server's, described only
	// by its schema) canonicalises them itself.
	if c, ok := t.(interface {
		Canonical(json.RawMessage) (json.RawMessage, error)
	}); ok {
		return c.Canonical(raw)
	}
	v := t.Args()
	if err := decode(t, raw, v); err != nil {
		return nil, err
	}
	if c, ok := v.(checked); ok {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	// Without HTML escaping, so that the transcript shows `2>/dev/null`, not
	// `2\u003e/dev/null`.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%s: encoding arguments: %w", t.Name(), err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decode parses arguments strictly into v (a pointer to the tool's argument
// struct), naming the tool and its schema on failure so the model can correct
// the call. encoding/json alone matches keys case-insensitively and lets the
// last duplicate win; both would let the text a person approves differ from
// the value that runs.
func decode(t Tool, args json.RawMessage, v any) error {
	if len(bytes.TrimSpace(args)) == 0 {
		args = json.RawMessage("{}")
	}
	fail := func(why string) error {
		return fmt.Errorf("invalid arguments for %s: %s; arguments must be one JSON object matching %s", t.Name(), why, t.Schema())
	}
	if err := checkKeys(args, fieldNames(v)); err != nil {
		return fail(err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail("unexpected data after the object")
	}
	return nil
}

// checkKeys refuses duplicate keys and keys that are not exactly a field name.
func checkKeys(args json.RawMessage, fields []string) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not valid JSON: %w", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if !slices.Contains(fields, key) {
			for _, f := range fields {
				if strings.EqualFold(f, key) {
					return fmt.Errorf("unknown key %q (keys are case-sensitive: did you mean %q?)", key, f)
				}
			}
			return fmt.Errorf("unknown key %q (known: %s)", key, strings.Join(fields, ", "))
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("not valid JSON: %w", err)
		}
	}
	return nil
}

// fieldNames lists the JSON names of the struct v points to.
func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}
