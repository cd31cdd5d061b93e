package tools

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The schemas the model sees are generated from the argument structs; they must say exactly
// what the hand-written schemas they replaced said (the model's contract does not change),
// and name exactly the struct's fields (strict decoding refuses anything else).
func TestSchemasAreGeneratedFromTheArgumentStructs(t *testing.T) {
	bash := &Bash{Config: BashConfig{DefaultTimeout: 2 * time.Minute, MaxTimeout: 10 * time.Minute}}
	want := map[string]string{
		"read_file":  `{"type":"object","properties":{"path":{"type":"string","description":"File path relative to the workspace root"},"offset":{"type":"integer","minimum":1,"description":"First line to return (1-based). Default 1"},"limit":{"type":"integer","minimum":1,"description":"Maximum number of lines to return. Default 2000"}},"required":["path"],"additionalProperties":false}`,
		"write_file": `{"type":"object","properties":{"path":{"type":"string","description":"File path relative to the workspace root"},"content":{"type":"string","description":"The complete new content of the file"}},"required":["path","content"],"additionalProperties":false}`,
		"edit_file":  `{"type":"object","properties":{"path":{"type":"string","description":"File path relative to the workspace root"},"old_string":{"type":"string","description":"Exact text to replace"},"new_string":{"type":"string","description":"Replacement text"},"replace_all":{"type":"boolean","description":"Replace every occurrence instead of requiring exactly one. Default false"}},"required":["path","old_string","new_string"],"additionalProperties":false}`,
		"list_dir":   `{"type":"object","properties":{"path":{"type":"string","description":"Directory relative to the workspace root. Default: the root"}},"additionalProperties":false}`,
		"glob":       `{"type":"object","properties":{"pattern":{"type":"string","description":"Glob pattern relative to path"},"path":{"type":"string","description":"Directory to search from, relative to the workspace root. Default: the root"}},"required":["pattern"],"additionalProperties":false}`,
		"grep":       `{"type":"object","properties":{"pattern":{"type":"string","description":"Regular expression, e.g. \"func \\\\w+Handler\" or \"TODO\""},"path":{"type":"string","description":"File or directory to search, relative to the workspace root. Default: the root"},"glob":{"type":"string","description":"Only search files whose name (or path, if it contains /) matches this glob"},"ignore_case":{"type":"boolean","description":"Case-insensitive match. Default false"},"max_results":{"type":"integer","minimum":1,"maximum":2000,"description":"Stop after this many matching lines. Default 200"}},"required":["pattern"],"additionalProperties":false}`,
		"git_status": `{"type":"object","properties":{},"additionalProperties":false}`,
		"git_diff":   `{"type":"object","properties":{"path":{"type":"string","description":"Limit the diff to this file or directory"}},"additionalProperties":false}`,
		"bash":       fmt.Sprintf(`{"type":"object","properties":{"command":{"type":"string","maxLength":%d,"description":"The command line, run with %s -c"},"timeout_seconds":{"type":"integer","minimum":1,"maximum":600,"description":"Kill the command after this many seconds. Default 120"}},"required":["command"],"additionalProperties":false}`, MaxCommandBytes, bash.shell()),
	}
	set := append(All(Env{}), bash)
	seen := map[string]bool{}
	for _, tool := range set {
		if seen[tool.Name()] {
			continue
		}
		seen[tool.Name()] = true
		w, ok := want[tool.Name()]
		if !ok {
			t.Errorf("tool %s has no expected schema here", tool.Name())
			continue
		}
		var got, exp map[string]any
		if err := json.Unmarshal(tool.Schema(), &got); err != nil {
			t.Fatalf("%s schema: %v", tool.Name(), err)
		}
		if err := json.Unmarshal([]byte(w), &exp); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(exp, got); diff != "" {
			t.Errorf("%s schema (-before +generated):\n%s", tool.Name(), diff)
		}
		// Every property is a field of the argument struct, and every field a property.
		props, _ := got["properties"].(map[string]any)
		var fields []string
		rt := reflect.TypeOf(tool.Args()).Elem()
		for i := range rt.NumField() {
			fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		if len(props) != len(fields) {
			t.Errorf("%s: schema properties %v, struct fields %v", tool.Name(), props, fields)
		}
		for _, f := range fields {
			if _, ok := props[f]; !ok {
				t.Errorf("%s: field %q is not in the schema", tool.Name(), f)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no tool %s", name)
		}
	}
}
