package approval_test

import (
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/approval"
)

func shell(cmd string) approval.Request {
	return approval.Request{Tool: "bash", Class: approval.ClassShell, Command: cmd, Summary: cmd}
}

// TestDenyBypasses runs commands that hide an rm from a deny pattern "rm *".
// The bash mode is Allow, so anything the deny-list misses runs: the old
// prefix matcher allowed all of these but the two with leading blanks or a
// trailing &, which stay as regression cases.
func TestDenyBypasses(t *testing.T) {
	p := approval.Policy{Bash: approval.Allow, DenyCommands: []string{"rm *"}}
	cases := map[string]string{
		"absolute path":           "/bin/rm -f x",
		"relative path":           "./bin/../rm -f x",
		"tab":                     "rm\t-f x",
		"leading spaces and tabs": " \t rm   -f x",
		"escaped name":            `\rm -f x`,
		"split quotes":            `r''m -f x`,
		"double quoted name":      `"rm" -f x`,
		"escaped newline":         "r\\\nm -f x",
		"after &&":                "true && rm -f x",
		"after ||":                "false || rm -f x",
		"after ;":                 "true; rm -f x",
		"after newline":           "true\nrm -f x",
		"in the background":       "rm -f x &",
		"negated":                 "! rm -f x",
		"time keyword":            "time rm -f x",
		"command substitution":    "$(rm -f x)",
		"in an argument":          "echo $(rm -f x)",
		"in double quotes":        `echo "$(rm -f x)"`,
		"backquotes":              "echo `rm -f x`",
		"in an assignment":        "x=$(rm -f x)",
		"process substitution":    "cat <(rm -f x)",
		"in a here-document":      "cat <<EOF\n$(rm -f x)\nEOF",
		"in a parameter default":  "echo ${x:-$(rm -f x)}",
		"subshell":                "(rm -f x)",
		"block":                   "{ rm -f x; }",
		"pipe":                    "echo | rm -f x",
		"if body":                 "if true; then rm -f x; fi",
		"if condition":            "if rm -f x; then :; fi",
		"for body":                "for i in 1; do rm -f x; done",
		"while body":              "while true; do rm -f x; done",
		"until condition":         "until rm -f x; do :; done",
		"case body":               "case a in a) rm -f x;; esac",
		"function body":           "f() { rm -f x; }; f",
		"assignment prefix":       "X=1 rm -f x",
		"env":                     "env rm -f x",
		"env path":                "/usr/bin/env rm -f x",
		"env with options":        "env -i -u HOME FOO=1 rm -f x",
		"env -S":                  "env -S 'rm -f x'",
		"command":                 "command rm -f x",
		"builtin exec":            "builtin exec rm -f x",
		"exec":                    "exec rm -f x",
		"nice":                    "nice -n 5 rm -f x",
		"nice numeric":            "nice -10 rm -f x",
		"nohup":                   "nohup rm -f x",
		"timeout":                 "timeout 10 rm -f x",
		"timeout options":         "timeout -k 5 -s KILL 10 rm -f x",
		"timeout unknown option":  "timeout --frobnicate 10 rm -f x",
		"xargs":                   "xargs rm",
		"xargs options":           "xargs -0 -n 1 -I {} rm {}",
		"sudo":                    "sudo -u root rm -f x",
		"doas":                    "doas rm -f x",
		"busybox":                 "busybox rm -f x",
		"stdbuf":                  "stdbuf -o0 rm -f x",
		"setsid":                  "setsid rm -f x",
		"usr bin time":            "/usr/bin/time -p rm -f x",
		"sh -c":                   "sh -c 'rm -f x'",
		"bash -c":                 `bash -c "rm -f x"`,
		"bash -ec":                "bash -ec 'rm -f x'",
		"bash -o -c":              "bash -o pipefail -c 'rm -f x'",
		"dash -c with args":       "dash -c 'rm -f \"$1\"' sh x",
		"zsh -c":                  "zsh -c 'rm -f x'",
		"nested shells":           `sh -c "bash -c 'rm -f x'"`,
		"busybox sh":              "busybox sh -c 'rm -f x'",
		"eval":                    "eval 'rm -f x'",
		"eval words":              "eval rm -f x",
		"eval in a wrapper":       "env eval 'rm -f x'",
		"shell in a wrapper":      "timeout 5 bash -c 'true; rm -f x'",
		"find -exec":              `find . -name x -exec rm -f {} \;`,
		"find -execdir shell":     "find . -execdir sh -c 'rm -f x' +",
		"trap":                    "trap 'rm -f x' EXIT",
		"coprocess":               "coproc rm -f x",
		"alias":                   "shopt -s expand_aliases; alias ls='rm -f x'",
	}
	for name, cmd := range cases {
		t.Run(name, func(t *testing.T) {
			if got, reason := p.Decide(shell(cmd)); got != approval.Deny {
				t.Errorf("Decide(%q) = %s (%s), want Deny", cmd, got, reason)
			}
		})
	}
}

// TestNotAllowedByPattern runs commands that an allow pattern with * admits
// although they run something else, or that cannot be analysed. None may be
// allowed by pattern; they fall back to the bash mode (Ask). The old prefix
// matcher admitted the option attacks, paths, globs, assignments and quoting
// tricks; it refused the chains, substitutions and redirections by spotting
// metacharacters, and the parser must go on refusing them.
func TestNotAllowedByPattern(t *testing.T) {
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{
		"go *", "git *", "find *", "make *", "node *", "python3 *", "perl *", "tar *", "rsync *", "sort *",
		"timeout *", "env *", "cat *", "echo *", "tail *", "cd *", "true", "bash *", "bash",
	}}
	cases := map[string]string{
		// options that run another program
		"git -c fsmonitor":         "git -c core.fsmonitor='sh -c evil' status",
		"git -c alias":             "git -c alias.x='!sh' x",
		"git --config-env":         "git --config-env=core.fsmonitor=EVIL status",
		"git --exec-path":          "git --exec-path=./evil status",
		"git --git-dir":            "git --git-dir=./planted status",
		"git -C then -c":           "git -C sub -c core.pager=evil log",
		"git upload-pack":          "git fetch --upload-pack=./evil origin",
		"git upload-pack abbrev":   "git fetch --upl=./evil origin",
		"git clone -u":             "git clone -u ./evil https://example.com/r.git",
		"git ls-remote -u":         "git ls-remote -u ./evil origin",
		"git push receive-pack":    "git push --receive-pack=./evil origin",
		"git push --exec":          "git push --exec ./evil origin",
		"git rebase -x":            "git rebase -x ./evil main",
		"git rebase --exec":        "git rebase --exec=./evil main",
		"git difftool -x":          "git difftool -x ./evil",
		"git submodule foreach":    "git submodule foreach ./evil",
		"git bisect run":           "git bisect run ./evil",
		"git filter-branch":        "git filter-branch --tree-filter ./evil",
		"git config write":         "git config core.fsmonitor ./evil",
		"git config alias":         "git config alias.st '!./evil'",
		"go test -exec":            "go test -exec ./evil ./...",
		"go test -exec=":           "go test -exec=./evil ./...",
		"go test --exec":           "go test --exec=./evil ./...",
		"go -toolexec after pkgs":  "go test ./... -toolexec ./evil",
		"go build -toolexec":       "go build -toolexec=./evil ./...",
		"go vet -vettool":          "go vet -vettool=./evil ./...",
		"go -overlay":              "go build -overlay=o.json ./...",
		"go -modfile":              "go build -modfile=evil.mod ./...",
		"go -ldflags extld":        "go build -ldflags=-extld=./evil ./...",
		"go -ldflags extld sep":    "go build -ldflags '-linkmode external -extld ./evil' ./...",
		"go env -w":                "go env -w GOFLAGS=-toolexec=./evil",
		"find -exec":               `find . -exec sh \;`,
		"find -exec +":             "find . -exec ./evil {} +",
		"find -execdir":            "find . -execdir sh {} +",
		"find -ok":                 `find . -ok sh \;`,
		"find -okdir":              "find . -okdir sh {} +",
		"find -delete":             "find / -delete",
		"find -fprint":             "find . -fprint /etc/x",
		"make --eval":              "make --eval='X := ${shell ./evil}'",
		"make --eval abbrev":       "make --ev='X := ${shell ./evil}'",
		"make -E":                  "make -E 'X := ${shell ./evil}'",
		"node -e":                  "node -e 'require(\"child_process\").execSync(\"x\")'",
		"node --eval":              "node --eval=x",
		"node --require":           "node --require ./evil.js app.js",
		"python -c":                "python3 -c 'import os'",
		"python clustered -c":      "python3 -Bc 'import os'",
		"perl -e":                  "perl -e 'system(1)'",
		"perl -ne":                 "perl -ne 'print' f",
		"perl -M":                  "perl '-Mstrict;system(1)' f.pl",
		"tar -I":                   "tar -I ./evil -xf a.tar",
		"tar --to-command":         "tar --to-command=sh -xf a.tar",
		"tar old style":            "tar xIf ./evil a.tar",
		"tar checkpoint":           "tar --checkpoint=1 --checkpoint-action=exec=sh -cf a.tar .",
		"rsync -e":                 "rsync -e ./evil a b:c",
		"rsync --rsync-path":       "rsync --rsync-path=./evil a b:c",
		"sort compress":            "sort --compress-program=./evil f",
		"inside a wrapper":         "timeout 60 go test -exec=./evil ./...",
		"xargs stdin arguments":    "xargs go test",
		"env -S":                   "env -S 'go test ./...'",
		"env var via env":          "env GOFLAGS=-toolexec=./evil go test ./...",
		"env var prefix":           "GOFLAGS=-toolexec=./evil go test ./...",
		"LD_PRELOAD":               "LD_PRELOAD=./x.so git status",
		"GIT_CONFIG via prefix":    "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0=./evil git status",
		"PATH assignment":          "PATH=.:/usr/bin; go test ./...",
		"export PATH":              "export PATH=.; go test ./...",
		"a local binary":           "./go test ./...",
		"an absolute path":         "/tmp/planted/go test ./...",
		"function shadowing":       "go() { ./evil; }; go test",
		"a glob argument":          "go test ./*",
		"a glob name":              "/usr/bin/g? test ./...",
		"a brace expansion":        "go test ./{a,b}",
		"a variable":               `go test "$PKG"`,
		"a variable name":          "$GO test ./...",
		"ansi-c quoting":           "go test $'./...'",
		"arithmetic":               "echo $((1+1))",
		"command substitution":     "go test $(echo ./...)",
		"backquotes":               "go test `echo ./...`",
		"process substitution":     "cat <(go test ./...)",
		"here-document expansion":  "cat <<EOF\n$(./evil)\nEOF",
		"double bracket":           `[[ 'a[$(./evil)]' -eq 1 ]]`,
		"let":                      "let 'a[$(./evil)]=1'",
		"redirect to a file":       "go test ./... > /etc/x",
		"append to a file":         "go test ./... >> ~/.bashrc",
		"redirect all":             "go test ./... &> out.txt",
		"redirect via >&":          "go test ./... >&out.txt",
		"named descriptor":         "go test ./... {fd}>out.txt",
		"read-write redirect":      "cat <> f",
		"pipe into a shell":        "git status | sh",
		"chained":                  "git status; ./evil",
		"unallowed shell":          "sh -c 'go test ./...'",
		"shell from a here-doc":    "bash -s <<'EOF'\n./evil\nEOF",
		"shell from a pipe":        "echo ./evil | bash",
		"shell -c in allowed bash": "bash -c './evil'",
		"git log --output":         "git log --output=/etc/x",
		"not parsable":             "go test 'unterminated",
		"only a comment":           "# go test ./...",
		"empty":                    "",
		"only an assignment":       "X=1",
		"c-style loop":             "for ((i=0;i<1;i++)); do true; done",
		"command with no argument": "go",
	}
	for name, cmd := range cases {
		t.Run(name, func(t *testing.T) {
			if got, reason := p.Decide(shell(cmd)); got != approval.Ask {
				t.Errorf("Decide(%q) = %s (%s), want Ask", cmd, got, reason)
			}
		})
	}
	// Even "*" cannot allow what cannot be analysed.
	all := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"*"}}
	for _, cmd := range []string{"go test 'unterminated", "", "$(./evil)", "$CMD", "xargs rm", strings.Repeat("true; ", 3000) + "true"} {
		if got, reason := all.Decide(shell(cmd)); got != approval.Ask {
			t.Errorf(`allow "*": Decide(%.40q) = %s (%s), want Ask`, cmd, got, reason)
		}
	}
}

func TestAllowedByPattern(t *testing.T) {
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{
		"go test *", "go build *", "go vet *", "git status", "git log *", "git diff *", "git add *", "git commit *",
		"tail *", "cd *", "timeout *", "env *", "find *", "grep *", "sh test.sh", "bash -c *",
	}, DenyCommands: []string{"rm *", "* --force*"}}
	cases := map[string]string{
		"go test":                      "go test ./...",
		"git status":                   "git status",
		"stderr merged and tailed":     "go test ./... 2>&1 | tail -n 50",
		"cd then build":                "cd sub && go build ./...",
		"extra spaces and tabs":        "go  test\t./...",
		"quoted run regexp":            `go test -run 'TestA|TestB' -count=1 ./...`,
		"double-quoted argument":       `git commit -m "fix: handle \"quotes\""`,
		"quoted glob":                  "git log --oneline -n 5 -- '*.go'",
		"find by name":                 `find . -name "*.go" -type f`,
		"find with braces":             `grep -rn "{}" .`,
		"allowed wrapper":              "timeout 600 go test ./...",
		"env without variables":        "env go vet ./...",
		"redirect to /dev/null":        "git status 2>/dev/null",
		"stdin from /dev/null":         "go test ./... </dev/null",
		"close a descriptor":           "go test ./... 2>&-",
		"here-string":                  "grep -c x <<< 'x y'",
		"quoted here-document":         "grep x <<'EOF'\n$(not run)\nEOF",
		"if with allowed parts":        "if go build ./...; then go test ./...; fi",
		"git commit -c is not git -c":  "git commit -c HEAD",
		"git add -u is not upload":     "git add -u",
		"several statements":           "git status\ngit diff --stat",
		"a script by exact pattern":    "sh test.sh",
		"a shell on an allowed string": "bash -c 'go test ./... && git status'",
		"line continuation":            "go test \\\n  ./...",
		"go test flags after packages": "go test ./... -run TestX -v",
		"test binary args after -args": "go test ./... -args -exec",
	}
	for name, cmd := range cases {
		t.Run(name, func(t *testing.T) {
			got, reason := p.Decide(shell(cmd))
			if got != approval.Allow {
				t.Fatalf("Decide(%q) = %s (%s), want Allow", cmd, got, reason)
			}
			if !strings.HasPrefix(reason, "command matches") {
				t.Errorf("reason %q lacks the prefix the loop records", reason)
			}
		})
	}
}

func TestDecideReasons(t *testing.T) {
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"go test *", "cd *"}, DenyCommands: []string{"curl *", "* curl *"}}
	cases := map[string]struct {
		cmd    string
		mode   approval.Mode
		reason string
	}{
		"one pattern": {"go test ./...", approval.Allow, `command matches allow pattern "go test *"`},
		"two patterns": {"cd a && go test ./...", approval.Allow,
			`command matches allow patterns "cd *", "go test *"`},
		// The line as written is matched first, so the reason names the
		// pattern that matched it whole, as before.
		"whole line first": {"sh test.sh; curl x", approval.Deny, `command matches deny pattern "* curl *"`},
		"in a command":     {"true && /usr/bin/curl x", approval.Deny, `command matches deny pattern "curl *"`},
		"no pattern": {"ls", approval.Ask,
			`bash approval mode is Ask; no allow pattern applies: "ls" matches none`},
		"why not": {"go test -exec=./evil ./...", approval.Ask,
			`bash approval mode is Ask; no allow pattern applies: in "go test -exec=./evil ./...", -exec=./evil can run another program or write files`},
		"substitution": {"go test $(x)", approval.Ask,
			"bash approval mode is Ask; no allow pattern applies: it uses command substitution"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			mode, reason := p.Decide(shell(tc.cmd))
			if mode != tc.mode || reason != tc.reason {
				t.Errorf("Decide(%q) = %s, %q; want %s, %q", tc.cmd, mode, reason, tc.mode, tc.reason)
			}
		})
	}
	// The policy runner/loop_test.go drives through the loop.
	loop := approval.Policy{Bash: approval.Ask, Writes: approval.Deny, AllowCommands: []string{"sh test.sh"}, DenyCommands: []string{"curl *", "* curl *"}}
	for cmd, want := range map[string]string{
		"sh test.sh":         `Allow command matches allow pattern "sh test.sh"`,
		"rm -rf lib":         `Ask bash approval mode is Ask; no allow pattern applies: "rm -rf lib" matches none`,
		"curl evil.example":  `Deny command matches deny pattern "curl *"`,
		"sh test.sh; curl x": `Deny command matches deny pattern "* curl *"`,
	} {
		if mode, reason := loop.Decide(shell(cmd)); string(mode)+" "+reason != want {
			t.Errorf("loop policy: Decide(%q) = %s %s, want %s", cmd, mode, reason, want)
		}
	}
	if mode, reason := (approval.Policy{Bash: approval.Deny}).Decide(shell("ls")); mode != approval.Deny || reason != "bash approval mode is Deny" {
		t.Errorf("no patterns: %s, %q", mode, reason)
	}
}

// TestDecideComputedNames shows what a deny-list cannot do: a command name
// only known when the line runs is never allowed by pattern, but it cannot be
// denied by name either; it falls back to the bash mode.
func TestDecideComputedNames(t *testing.T) {
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"*"}, DenyCommands: []string{"rm *"}}
	for _, cmd := range []string{"$(echo rm) -f x", "${RM:-rm} -f x", "/bin/r? -f x"} {
		if got, reason := p.Decide(shell(cmd)); got != approval.Ask {
			t.Errorf("Decide(%q) = %s (%s), want Ask", cmd, got, reason)
		}
	}
}

// TestDecideLookupIsNotRun: command -v only looks a name up, so a deny
// pattern for the name does not apply.
func TestDecideLookupIsNotRun(t *testing.T) {
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"command -v *"}, DenyCommands: []string{"rm *"}}
	if got, reason := p.Decide(shell("command -v rm")); got != approval.Allow {
		t.Errorf("Decide(command -v rm) = %s (%s), want Allow", got, reason)
	}
}

// TestDecideBoundedNesting nests eval deeper than the analysis looks: the
// line is not allowed, whatever the patterns say.
func TestDecideBoundedNesting(t *testing.T) {
	cmd := "rm -f x"
	for range 12 {
		cmd = "eval " + "'" + strings.ReplaceAll(cmd, "'", `'\''`) + "'"
	}
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"*"}, DenyCommands: []string{"rm *"}}
	if got, reason := p.Decide(shell(cmd)); got == approval.Allow {
		t.Errorf("deeply nested eval was allowed: %s", reason)
	}
	shallow := "eval 'eval \"rm -f x\"'"
	if got, reason := p.Decide(shell(shallow)); got != approval.Deny {
		t.Errorf("Decide(%q) = %s (%s), want Deny", shallow, got, reason)
	}
}

// TestDecideHugeCommand: a line far beyond what the bash tool accepts is
// matched only as written and never allowed, and deciding stays cheap.
func TestDecideHugeCommand(t *testing.T) {
	cmd := strings.Repeat("nice ", 1<<16) + "rm -f x"
	p := approval.Policy{Bash: approval.Ask, AllowCommands: []string{"*"}, DenyCommands: []string{"rm *"}}
	if got, _ := p.Decide(shell(cmd)); got == approval.Allow {
		t.Errorf("huge command allowed")
	}
	wrapped := strings.Repeat("nice ", 2000) + "rm -f x" // within the analysed size, deeper than the nesting bound
	if got, _ := p.Decide(shell(wrapped)); got == approval.Allow {
		t.Errorf("deeply wrapped command allowed")
	}
}
