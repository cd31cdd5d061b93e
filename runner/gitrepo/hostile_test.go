package gitrepo_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
)

// secret writes a file outside the workspace, as the token the trusted runner
// holds would be, and returns its path and the token in it. content formats
// the token the way the attacked reader would parse it (a ref, a config, ...),
// so that a parser echoing what it read would show it in an error.
func secret(t *testing.T, content string) (path, token string) {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token = "s3cr3t-token-" + hex.EncodeToString(b)
	path = filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(path, []byte(strings.ReplaceAll(content, "TOKEN", token)), 0o600))
	return path, token
}

// noLeak fails if the token shows in anything the repository returns.
func noLeak(t *testing.T, token string, p gitrepo.Patch, err error, more ...string) {
	t.Helper()
	if bytes.Contains(p.Text, []byte(token)) {
		t.Errorf("the patch contains the secret:\n%s", p.Text)
	}
	for _, f := range p.Files {
		if strings.Contains(f.Path, token) {
			t.Errorf("a file stat names the secret: %+v", f)
		}
	}
	for _, o := range p.Omitted {
		if strings.Contains(o.String(), token) {
			t.Errorf("an omitted file names the secret: %+v", o)
		}
	}
	if err != nil && strings.Contains(err.Error(), token) {
		t.Errorf("the error contains the secret: %v", err)
	}
	for _, s := range more {
		if strings.Contains(s, token) {
			t.Errorf("output contains the secret: %s", s)
		}
	}
}

// diffAll runs everything the trusted side does with a workspace and checks
// none of it leaks the token: Open (the base), Status, Diff and its totals.
func diffAll(t *testing.T, ws, token string, opened *gitrepo.Repo) (gitrepo.Patch, error) {
	t.Helper()
	var (
		p   gitrepo.Patch
		err error
	)
	r := opened
	if r == nil {
		if r, err = gitrepo.Open(ws); err != nil {
			noLeak(t, token, p, err)
			return p, err
		}
	}
	st, serr := r.Status()
	noLeak(t, token, p, serr, st, r.Base())
	p, err = r.Diff()
	files, add, del := p.Totals()
	noLeak(t, token, p, err, fmt.Sprint(files, add, del))
	return p, err
}

func workspace(t *testing.T) (string, *gitrepo.Repo) {
	t.Helper()
	ws := testrepo.New(t, map[string]string{"a.txt": "a\n", "dir/f.txt": "f\n", "keep.txt": "keep\n"})
	r, err := gitrepo.Open(ws)
	if err != nil {
		t.Fatal(err)
	}
	return ws, r
}

// TestWorkingTreeSymlinksAreTheirTargetText plants symlinks to a secret
// outside the workspace, as the agent's code could. git records a symlink as
// its target text; the patch must too, and never the content behind it.
func TestWorkingTreeSymlinksAreTheirTargetText(t *testing.T) {
	cases := map[string]struct {
		attack func(t *testing.T, ws, secretPath string)
		// wantLink is the path that must show as a symlink to the secret's path.
		wantLink string
	}{
		"new absolute symlink": {
			attack:   func(t *testing.T, ws, sp string) { must(t, os.Symlink(sp, filepath.Join(ws, "leak"))) },
			wantLink: "leak",
		},
		"new relative symlink climbing out": {
			attack: func(t *testing.T, ws, sp string) {
				rel, err := filepath.Rel(ws, sp)
				must(t, err)
				must(t, os.Symlink(rel, filepath.Join(ws, "leak")))
			},
			wantLink: "leak",
		},
		"tracked file replaced by a symlink": {
			attack: func(t *testing.T, ws, sp string) {
				must(t, os.Remove(filepath.Join(ws, "a.txt")))
				must(t, os.Symlink(sp, filepath.Join(ws, "a.txt")))
			},
			wantLink: "a.txt",
		},
		"tracked directory replaced by a symlink to a directory holding the secret as f.txt": {
			attack: func(t *testing.T, ws, sp string) {
				must(t, os.RemoveAll(filepath.Join(ws, "dir")))
				must(t, os.Rename(sp, filepath.Join(filepath.Dir(sp), "f.txt")))
				must(t, os.Symlink(filepath.Dir(sp), filepath.Join(ws, "dir")))
			},
			wantLink: "dir",
		},
		"symlinked .gitignore": {
			attack: func(t *testing.T, ws, sp string) { must(t, os.Symlink(sp, filepath.Join(ws, ".gitignore"))) },
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ws, r := workspace(t)
			sp, token := secret(t, "TOKEN\n")
			target := sp
			tc.attack(t, ws, sp)
			if tc.wantLink == "dir" {
				target = filepath.Dir(sp)
			}
			p, err := diffAll(t, ws, token, r)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantLink == "" {
				return
			}
			if tc.wantLink == "leak" && !bytes.Contains(p.Text, []byte("new file mode 120000")) {
				t.Errorf("no new symlink in the patch:\n%s", p.Text)
			}
			want := "+" + target
			if tc.wantLink == "leak" && !filepath.IsAbs(mustReadlink(t, filepath.Join(ws, "leak"))) {
				want = "+" + mustReadlink(t, filepath.Join(ws, "leak"))
			}
			if !bytes.Contains(p.Text, []byte(want+"\n\\ No newline at end of file")) {
				t.Errorf("the symlink's target text %q is not in the patch:\n%s", want, p.Text)
			}
			if tc.wantLink == "dir" && !bytes.Contains(p.Text, []byte("deleted file mode 100644")) {
				t.Errorf("dir/f.txt should be deleted (a path below a symlink does not exist):\n%s", p.Text)
			}
		})
	}
}

func mustReadlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	must(t, err)
	return s
}

// TestGitDirectoryIsConfinedToTheWorkspace attacks through .git: every file
// go-git reads there replaced by a symlink to the secret, another object store
// named in objects/info/alternates, .git itself redirected, and index entries
// naming paths outside the workspace. Nothing may read the secret.
func TestGitDirectoryIsConfinedToTheWorkspace(t *testing.T) {
	link := func(name, content string) func(t *testing.T, ws string) string {
		return func(t *testing.T, ws string) string {
			sp, token := secret(t, content)
			p := filepath.Join(ws, ".git", filepath.FromSlash(name))
			_ = os.Remove(p)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.Symlink(sp, p))
			return token
		}
	}
	cases := map[string]struct {
		attack func(t *testing.T, ws string) (token string)
		// openFails: Open itself refuses the workspace after the attack.
		openFails bool
	}{
		"HEAD":         {attack: link("HEAD", "ref: refs/heads/TOKEN\n"), openFails: true},
		"config":       {attack: link("config", "[core]\n\tworktree = /TOKEN\n[remote \"TOKEN\"]\n\turl = TOKEN\n")},
		"index":        {attack: link("index", "DIRC TOKEN\n")},
		"branch ref":   {attack: link("refs/heads/main", "TOKEN\n")},
		"info/exclude": {attack: link("info/exclude", "TOKEN\n")},
		"objects/info/alternates": {attack: func(t *testing.T, ws string) string {
			// The secret is an object store elsewhere: a repository whose
			// commit holds the token. The workspace's HEAD names that commit
			// and has no objects of its own.
			other := testrepo.New(t, map[string]string{"secret.txt": "placeholder\n"})
			sp, token := secret(t, "TOKEN\n")
			b, _ := os.ReadFile(sp)
			testrepo.Write(t, other, map[string]string{"secret.txt": string(b)})
			orepo, err := git.PlainOpen(other)
			must(t, err)
			testrepo.Commit(t, orepo, "secret")
			head, err := orepo.Head()
			must(t, err)
			must(t, os.RemoveAll(filepath.Join(ws, ".git", "objects")))
			must(t, os.MkdirAll(filepath.Join(ws, ".git", "objects", "info"), 0o755))
			must(t, os.WriteFile(filepath.Join(ws, ".git", "objects", "info", "alternates"), []byte(filepath.Join(other, ".git", "objects")+"\n../../../"+filepath.Base(other)+"/.git/objects\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(ws, ".git", "refs", "heads", "main"), []byte(head.Hash().String()+"\n"), 0o644))
			_ = os.Remove(filepath.Join(ws, ".git", "index"))
			return token
		}},
		"packed-refs": {attack: func(t *testing.T, ws string) string {
			must(t, os.Remove(filepath.Join(ws, ".git", "refs", "heads", "main")))
			return link("packed-refs", "# pack-refs with: peeled\nTOKEN refs/heads/main\n")(t, ws)
		}, openFails: true},
		".git is a symlink to another repository": {attack: func(t *testing.T, ws string) string {
			sp, token := secret(t, "TOKEN\n")
			b, _ := os.ReadFile(sp)
			other := testrepo.New(t, map[string]string{"a.txt": string(b), "dir/f.txt": string(b)})
			must(t, os.RemoveAll(filepath.Join(ws, ".git")))
			must(t, os.Symlink(filepath.Join(other, ".git"), filepath.Join(ws, ".git")))
			return token
		}, openFails: true},
		".git is a gitdir: file": {attack: func(t *testing.T, ws string) string {
			sp, token := secret(t, "TOKEN\n")
			b, _ := os.ReadFile(sp)
			other := testrepo.New(t, map[string]string{"a.txt": string(b), "dir/f.txt": string(b)})
			must(t, os.RemoveAll(filepath.Join(ws, ".git")))
			must(t, os.WriteFile(filepath.Join(ws, ".git"), []byte("gitdir: "+filepath.Join(other, ".git")+"\n"), 0o644))
			return token
		}, openFails: true},
		"index entries naming files outside": {attack: func(t *testing.T, ws string) string {
			sp, token := secret(t, "TOKEN\n")
			rel, err := filepath.Rel(ws, sp)
			must(t, err)
			repo, err := git.PlainOpen(ws)
			must(t, err)
			idx, err := repo.Storer.Index()
			must(t, err)
			for _, n := range []string{filepath.ToSlash(rel), sp, ".git/../" + filepath.ToSlash(rel)} {
				idx.Entries = append(idx.Entries, &index.Entry{Name: n, Hash: plumbing.ComputeHash(plumbing.BlobObject, nil), Mode: filemode.Regular})
			}
			must(t, repo.Storer.SetIndex(idx))
			return token
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ws, r := workspace(t)
			testrepo.Write(t, ws, map[string]string{"a.txt": "changed\n"})
			token := tc.attack(t, ws)
			_, err := diffAll(t, ws, token, r) // opened before the attack
			t.Logf("diff after the attack: %v", err)
			_, err = diffAll(t, ws, token, nil) // opened after it
			if tc.openFails && err == nil {
				t.Error("Open accepted the workspace")
			}
			t.Logf("open after the attack: %v", err)
		})
	}
}

// TestGitDirectoryMemoryIsBounded plants .git files that make a decoder
// allocate in proportion to what they declare or contain.
func TestGitDirectoryMemoryIsBounded(t *testing.T) {
	cases := map[string]struct {
		attack  func(t *testing.T, ws string)
		wantErr string
	}{
		"huge index": {
			attack: func(t *testing.T, ws string) {
				f, err := os.Create(filepath.Join(ws, ".git", "index"))
				must(t, err)
				must(t, f.Truncate(1<<30)) // sparse: no disk used
				must(t, f.Close())
			},
			wantErr: "index: 1073741824 bytes, over the",
		},
		"huge packed-refs": {
			attack: func(t *testing.T, ws string) {
				must(t, os.Remove(filepath.Join(ws, ".git", "refs", "heads", "main")))
				f, err := os.Create(filepath.Join(ws, ".git", "packed-refs"))
				must(t, err)
				must(t, f.Truncate(1<<30))
				must(t, f.Close())
			},
			wantErr: "packed-refs: 1073741824 bytes, over the",
		},
		"pack index declaring four billion objects": {
			attack: func(t *testing.T, ws string) {
				dir := filepath.Join(ws, ".git", "objects", "pack")
				must(t, os.MkdirAll(dir, 0o755))
				name := "pack-" + strings.Repeat("ab", 20)
				var idx bytes.Buffer
				idx.Write([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 2})
				for range 256 {
					_ = binary.Write(&idx, binary.BigEndian, uint32(0xffffffff))
				}
				idx.Write(make([]byte, 40))
				must(t, os.WriteFile(filepath.Join(dir, name+".idx"), idx.Bytes(), 0o644))
				must(t, os.WriteFile(filepath.Join(dir, name+".pack"), []byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"), 0o644))
				// Objects must be looked up in packs: drop the loose ones.
				ents, _ := os.ReadDir(filepath.Join(ws, ".git", "objects"))
				for _, e := range ents {
					if len(e.Name()) == 2 {
						must(t, os.RemoveAll(filepath.Join(ws, ".git", "objects", e.Name())))
					}
				}
			},
			wantErr: "malformed IDX file",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ws, r := workspace(t)
			testrepo.Write(t, ws, map[string]string{"a.txt": "changed\n"})
			tc.attack(t, ws)
			_, err := r.Diff()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Diff: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFIFOInTheWorkspaceDoesNotBlock(t *testing.T) {
	ws, r := workspace(t)
	must(t, syscall.Mkfifo(filepath.Join(ws, "pipe"), 0o644))
	must(t, os.Remove(filepath.Join(ws, "a.txt")))
	must(t, syscall.Mkfifo(filepath.Join(ws, "a.txt"), 0o644))
	done := make(chan error, 1)
	go func() {
		_, err := r.Diff()
		if err == nil {
			_, err = r.Status()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Diff blocked on a FIFO")
	}
}
