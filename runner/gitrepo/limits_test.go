package gitrepo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
)

func lines(n int, word string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(word)
		b.WriteByte(byte('a' + i%26))
		b.WriteByte('\n')
	}
	return b.String()
}

func TestPatchOmitsFilesOverTheLimitsAndStaysApplicable(t *testing.T) {
	origin := testrepo.New(t, map[string]string{
		"small.txt":     "one\ntwo\n",
		"big-edit.txt":  lines(400, "base"), // 2 KiB
		"big-gone.txt":  lines(400, "gone"),
		"same-size.txt": lines(400, "same"),
	})
	dir := filepath.Join(t.TempDir(), "ws")
	if _, err := gitrepo.Clone(context.Background(), origin, "", dir, nil); err != nil {
		t.Fatal(err)
	}
	r, err := gitrepo.OpenWithOptions(dir, gitrepo.Options{MaxFileBytes: 1 << 10, MaxPatchBytes: 3 << 10})
	if err != nil {
		t.Fatal(err)
	}
	testrepo.Write(t, dir, map[string]string{
		"small.txt":      "one\nTWO\n",
		"big-edit.txt":   lines(400, "edit"),
		"big-new.txt":    lines(400, "new!"),
		"same-size.txt":  lines(400, "SAME"), // same size as the base: hashed to see it changed
		"bin/blob.dat":   "\x00" + lines(400, "binary"),
		"medium-1.txt":   lines(200, "m1"), // 800 bytes each, ~1 KiB of patch: the third is over the patch limit
		"medium-2.txt":   lines(200, "m2"),
		"medium-3.txt":   lines(200, "m3"),
		"unchanged-big":  "",
		"z-last.txt":     "fits\n",
		"big-gone.txt":   "",
		"unchanged-big2": "",
	})
	for _, f := range []string{"big-gone.txt", "unchanged-big", "unchanged-big2"} {
		must(t, os.Remove(filepath.Join(dir, f)))
	}

	p, err := r.Diff()
	if err != nil {
		t.Fatal(err)
	}
	var inText []string
	for _, f := range p.Files {
		inText = append(inText, f.Path)
	}
	if diff := cmp.Diff([]string{"bin/blob.dat", "medium-1.txt", "medium-2.txt", "small.txt", "z-last.txt"}, inText); diff != "" {
		t.Errorf("files in the patch text (-want +got):\n%s\n%s", diff, p.Text)
	}
	perFile := "text file over the 1 KiB per-file limit"
	wantOmitted := []gitrepo.OmittedFile{
		{Path: "big-edit.txt", Size: 2400, Reason: perFile},
		{Path: "big-gone.txt", Size: 2400, Reason: perFile},
		{Path: "big-new.txt", Size: 2400, Reason: perFile},
		{Path: "medium-3.txt", Size: 800, Reason: "its diff would take the patch over its 3 KiB limit"},
		{Path: "same-size.txt", Size: 2400, Reason: perFile},
	}
	if diff := cmp.Diff(wantOmitted, p.Omitted); diff != "" {
		t.Errorf("omitted (-want +got):\n%s", diff)
	}
	if len(p.Text) > 3<<10 {
		t.Errorf("patch is %d bytes, over its limit", len(p.Text))
	}
	if files, add, del := p.Totals(); files != 10 || add != 402 || del != 1 {
		t.Errorf("totals %d files +%d -%d", files, add, del)
	}
	if bytes.Contains(p.Text, []byte("edit")) || bytes.Contains(p.Text, []byte("#")) {
		t.Errorf("omitted content or a comment in the patch:\n%s", p.Text)
	}

	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git binary to apply the patch with")
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	run(t, "", "git", "clone", "-q", origin, fresh)
	patchFile := filepath.Join(t.TempDir(), "p.patch")
	must(t, os.WriteFile(patchFile, p.Text, 0o644))
	run(t, fresh, "git", "apply", "--exclude=bin/blob.dat", patchFile)
	for name, want := range map[string]string{"small.txt": "one\nTWO\n", "medium-2.txt": lines(200, "m2"), "z-last.txt": "fits\n"} {
		if b, _ := os.ReadFile(filepath.Join(fresh, name)); string(b) != want {
			t.Errorf("%s after apply = %q", name, b)
		}
	}
}

// TestDiffMemoryDoesNotGrowWithFileSize builds the patch of a workspace with
// a large untracked text file and a large tracked one rewritten. Before
// streaming, both were read whole (and the untracked one went into the patch).
func TestDiffMemoryDoesNotGrowWithFileSize(t *testing.T) {
	const size = 48 << 20
	big := strings.Repeat(lines(1<<10, "0123456789abcdef0123456789abcdef"), size/(1<<10*35)+1)
	ws := testrepo.New(t, map[string]string{"tracked.txt": big, "small.txt": "x\n"})
	r, err := gitrepo.Open(ws)
	if err != nil {
		t.Fatal(err)
	}
	testrepo.Write(t, ws, map[string]string{"untracked.txt": big, "tracked.txt": strings.ToUpper(big), "small.txt": "y\n"})
	big = "" //nolint:ineffassign // drops the only reference, so the memory measured below is the runner's

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := r.Diff()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Diff allocated %d MiB for two %d MiB files", alloc>>20, size>>20)
	}
	if len(p.Omitted) != 2 || len(p.Files) != 1 || len(p.Text) > 1<<10 {
		t.Errorf("files %+v, omitted %+v, %d bytes of patch", p.Files, p.Omitted, len(p.Text))
	}
}

func TestModeChangeOfALargeFileIsInThePatch(t *testing.T) {
	ws := testrepo.New(t, map[string]string{"run.sh": lines(200, "echo ")})
	r, err := gitrepo.OpenWithOptions(ws, gitrepo.Options{MaxFileBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(filepath.Join(ws, "run.sh"), 0o755))
	p, err := r.Diff()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(p.Text, []byte("old mode 100644\nnew mode 100755\n")) || len(p.Omitted) != 0 {
		t.Errorf("patch:\n%s\nomitted %+v", p.Text, p.Omitted)
	}
}
