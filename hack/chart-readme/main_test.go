package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseValues(t *testing.T) {
	cases := map[string]struct {
		values  string
		want    []row
		wantErr string
	}{
		"leaves, sections and multi-line comments": {
			values: `# A header that is not a value's comment.

image:
  # -- Image
  # repository.
  repository: agentry/manager
# A section: its keys are documented.
s3:
  # -- TLS | on.
  tls: true
# -- Resources, documented as a whole.
resources:
  limits: {memory: 512Mi}
# -- Ports.
ports: [1, 2]
`,
			want: []row{
				{key: "image.repository", typ: "string", def: `"agentry/manager"`, desc: "Image repository."},
				{key: "s3.tls", typ: "bool", def: "true", desc: "TLS | on."},
				{key: "resources", typ: "object", def: `{"limits":{"memory":"512Mi"}}`, desc: "Resources, documented as a whole."},
				{key: "ports", typ: "list", def: "[1,2]", desc: "Ports."},
			},
		},
		"an undocumented value": {
			values:  "# -- Documented.\na: 1\nb: 2\n",
			wantErr: "b has no '# --' comment",
		},
		"a plain comment is not documentation": {
			values:  "# Not with the marker.\na: 1\n",
			wantErr: "a has no '# --' comment",
		},
		"a documented section": {
			values:  "# -- Section.\ns3:\n  # -- Bucket.\n  bucket: b\n",
			wantErr: "s3 is a section",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseValues([]byte(tc.values))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(row{})); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplaceTable(t *testing.T) {
	readme := "# Chart\n\n" + beginMarker + "\nold\n" + endMarker + "\nAfter.\n"
	got, err := replaceTable([]byte(readme), renderTable([]row{{key: "a", typ: "int", def: "1", desc: "A <b> | c."}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Chart\n\n" + beginMarker + "\n", "| `a` | int | `1` | A &lt;b&gt; \\| c. |\n", "\n" + endMarker + "\nAfter.\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("README lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "old") {
		t.Errorf("the old table is still there:\n%s", got)
	}
	if _, err := replaceTable([]byte("no markers"), ""); err == nil {
		t.Error("a README without markers was accepted")
	}
}
