package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/agentry-dev/agentry/contract"
)

// SetupLeakCheck is the command name recorded for the check that no setup Secret was left
// in a file the agent phase can read.
const SetupLeakCheck = "(agentry: no setup Secret left in the agent's files)"

// secretForm is one way a secret's value can sit in a file.
type secretForm struct {
	name, encoding string
	value          []byte
}

// secretForms lists the encodings a tool writes a credential in: as is (.npmrc, .netrc),
// base64 (docker config.json, basic auth) and hex.
func secretForms(names []string, getenv func(string) string) []secretForm {
	var forms []secretForm
	for _, n := range names {
		v := getenv(n)
		if len(v) < 8 {
			continue // as the redactor: too short to look for without false alarms
		}
		b := []byte(v)
		add := func(enc, s string) { forms = append(forms, secretForm{name: n, encoding: enc, value: []byte(s)}) }
		add("as is", v)
		add("base64", base64.RawStdEncoding.EncodeToString(b))
		add("base64", base64.RawURLEncoding.EncodeToString(b))
		add("hex", hex.EncodeToString(b))
	}
	return forms
}

// checkNoSecretLeft looks through every regular file under dirs for the setup Secrets'
// values. A setup command that stores one (an .npmrc with the token, a docker config)
// would hand it to the agent, whose code reads these directories; such files are removed
// and setup fails, naming them. Symlinks are not followed: what they point at is either
// under a checked directory or out of the agent's reach.
func checkNoSecretLeft(dirs, names []string, getenv func(string) string) *contract.Setup {
	forms := secretForms(names, getenv)
	if len(forms) == 0 {
		return nil
	}
	var found []string
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil //nolint:nilerr // an unreadable entry is skipped; the walk goes on
			}
			if f := fileHolds(path, forms); f != nil {
				msg := fmt.Sprintf("%s held the value of %s (%s)", path, f.name, f.encoding)
				if err := os.Remove(path); err != nil {
					msg += fmt.Sprintf(" and could not be removed: %v", err)
				} else {
					msg += "; removed"
				}
				found = append(found, msg)
			}
			return nil
		})
	}
	if len(found) == 0 {
		return nil
	}
	return &contract.Setup{
		Command:  SetupLeakCheck,
		ExitCode: 1,
		Output: strings.Join(found, "\n") + "\nSetup commands must not store spec.setup.env values in files: the agent reads " +
			strings.Join(dirs, ", ") + ". Pass them through the environment only (for example a tool's environment variable instead of its config file).\n",
	}
}

// fileHolds reports the first form found in the file at path, reading it in chunks that
// overlap by the longest form, so a value across a chunk boundary is found too.
func fileHolds(path string, forms []secretForm) *secretForm {
	// O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a FIFO since the walk is
	// neither followed nor waited on.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	longest := 0
	for _, fm := range forms {
		longest = max(longest, len(fm.value))
	}
	buf := make([]byte, max(256<<10, 2*longest))
	carry := 0
	for {
		n, err := f.Read(buf[carry:])
		window := buf[:carry+n]
		for i := range forms {
			if bytes.Contains(window, forms[i].value) {
				return &forms[i]
			}
		}
		if err != nil {
			return nil // io.EOF, or unreadable: nothing the agent could read either
		}
		carry = min(longest-1, len(window))
		copy(buf, window[len(window)-carry:])
	}
}
