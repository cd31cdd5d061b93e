// Command chart-readme writes the values table of a Helm chart's README from the `# --`
// comments in its values.yaml, between the markers
//
//	<!-- values:begin -->
//	<!-- values:end -->
//
// A key whose comment starts with `# --` is documented by the rest of that comment. A mapping
// whose keys are documented is a section: it gets no row of its own. Every other value (a
// scalar, a list, a mapping with no documented keys) must be documented, so that no value
// goes into the chart unexplained.
//
// Usage: chart-readme [-chart charts/agentry] [-check]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

const (
	beginMarker = "<!-- values:begin -->"
	endMarker   = "<!-- values:end -->"
)

func main() {
	chart := flag.String("chart", "charts/agentry", "Chart directory holding values.yaml and README.md.")
	check := flag.Bool("check", false, "Do not write: fail when README.md is not what it would be.")
	flag.Parse()
	if err := run(*chart, *check); err != nil {
		fmt.Fprintln(os.Stderr, "chart-readme:", err)
		os.Exit(1)
	}
}

func run(chart string, check bool) error {
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	readmePath := filepath.Join(chart, "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return err
	}
	rows, err := parseValues(values)
	if err != nil {
		return err
	}
	updated, err := replaceTable(readme, renderTable(rows))
	if err != nil {
		return fmt.Errorf("%s: %w", readmePath, err)
	}
	if check {
		if !bytes.Equal(updated, readme) {
			return fmt.Errorf("%s is stale: run 'make chart-readme'", readmePath)
		}
		return nil
	}
	if bytes.Equal(updated, readme) {
		return nil
	}
	return os.WriteFile(readmePath, updated, 0o644)
}

// row is one documented value.
type row struct {
	key, typ, def, desc string
}

func parseValues(data []byte) ([]row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: not a mapping")
	}
	var rows []row
	var errs []error
	walk(doc.Content[0], "", &rows, &errs)
	return rows, errors.Join(errs...)
}

func walk(m *yaml.Node, prefix string, rows *[]row, errs *[]error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		desc, documented := description(k.HeadComment)
		if v.Kind == yaml.MappingNode && hasDocumentedKey(v) {
			if documented {
				*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s is a section (its keys are documented): use a plain # comment for it, not # --", k.Line, key))
			}
			walk(v, key+".", rows, errs)
			continue
		}
		if !documented {
			*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s has no '# --' comment", k.Line, key))
			continue
		}
		typ, def, err := typeAndDefault(v)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("values.yaml:%d: %s: %w", k.Line, key, err))
			continue
		}
		*rows = append(*rows, row{key: key, typ: typ, def: def, desc: desc})
	}
}

func hasDocumentedKey(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, ok := description(m.Content[i].HeadComment); ok {
			return true
		}
	}
	return false
}

// description returns the text of a comment from its `# --` line on, as one line.
func description(comment string) (string, bool) {
	var parts []string
	found := false
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(line)
		if !found {
			if rest, ok := strings.CutPrefix(line, "# --"); ok {
				found = true
				parts = append(parts, strings.TrimSpace(rest))
			}
			continue
		}
		if line == "" { // a blank line ends the comment that belongs to the key
			parts = nil
			found = false
			continue
		}
		parts = append(parts, strings.TrimSpace(strings.TrimPrefix(line, "#")))
	}
	return strings.Join(parts, " "), found
}

func typeAndDefault(v *yaml.Node) (typ, def string, err error) {
	var val any
	if err := v.Decode(&val); err != nil {
		return "", "", err
	}
	switch v.Kind {
	case yaml.MappingNode:
		typ = "object"
	case yaml.SequenceNode:
		typ = "list"
	default:
		switch v.Tag {
		case "!!str":
			typ = "string"
		case "!!int":
			typ = "int"
		case "!!float":
			typ = "float"
		case "!!bool":
			typ = "bool"
		case "!!null":
			typ = "null"
		default:
			typ = strings.TrimPrefix(v.Tag, "!!")
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(val); err != nil {
		return "", "", err
	}
	return typ, strings.TrimSpace(b.String()), nil
}

func renderTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.key, r.typ, strings.ReplaceAll(r.def, "|", `\|`), cell(r.desc))
	}
	return b.String()
}

// cell escapes what would end a Markdown table cell or read as an HTML tag.
var cellEscaper = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

func cell(s string) string { return cellEscaper.Replace(s) }

func replaceTable(readme []byte, table string) ([]byte, error) {
	s := string(readme)
	begin := strings.Index(s, beginMarker)
	end := strings.Index(s, endMarker)
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("no %s ... %s markers", beginMarker, endMarker)
	}
	generated := beginMarker + "\n<!-- Generated from values.yaml by 'make chart-readme'; edit the comments there. -->\n\n" + table + "\n"
	return []byte(s[:begin] + generated + s[end:]), nil
}
