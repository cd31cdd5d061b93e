package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentry-dev/agentry/runner/tools"
)

// secretsFDEnv names the descriptor a re-executed runner reads its secrets from.
const secretsFDEnv = "AGENTRY_SECRETS_FD"

// hideSecrets keeps the runner's secrets out of /proc. The kernel shows a
// process's initial environment in /proc/PID/environ for its whole life, and
// unsetting a variable does not change it; so a runner given OPENAI_API_KEY
// or AWS credentials in its environment re-executes itself with them removed
// and passes them on a pipe instead. The new image reads the pipe, puts them
// back into its own (invisible) copy of the environment and marks itself
// non-dumpable, which also closes /proc/PID/mem and /proc/PID/environ to
// other processes of the same user.
//
// Without secrets in the environment it only marks itself non-dumpable: its
// memory may still hold a key read from --api-key-file.
func hideSecrets() error {
	if fd := os.Getenv(secretsFDEnv); fd != "" {
		return readSecrets(fd)
	}
	secrets := map[string]string{}
	for _, name := range tools.SecretEnv {
		if v, ok := os.LookupEnv(name); ok {
			secrets[name] = v
		}
	}
	if len(secrets) == 0 {
		return markNonDumpable()
	}
	b, err := json.Marshal(secrets)
	if err != nil {
		return err
	}
	if len(b) > 60<<10 { // more than a pipe holds without a reader
		return fmt.Errorf("the secrets in the environment are larger than %d bytes", 60<<10)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	_ = w.Close()
	// Keep the read end open across exec.
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETFD, 0); err != nil {
		return err
	}
	env := append(executorEnv(os.Environ()), secretsFDEnv+"="+strconv.Itoa(int(r.Fd())))
	return syscall.Exec("/proc/self/exe", os.Args, env)
}

func readSecrets(fd string) error {
	n, err := strconv.Atoi(fd)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", secretsFDEnv, fd, err)
	}
	f := os.NewFile(uintptr(n), "secrets")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return err
	}
	var secrets map[string]string
	if err := json.Unmarshal(b, &secrets); err != nil {
		return fmt.Errorf("reading secrets from descriptor %d: %w", n, err)
	}
	_ = os.Unsetenv(secretsFDEnv)
	for k, v := range secrets {
		if slices.Contains(tools.SecretEnv, k) && !strings.ContainsRune(k, '=') {
			_ = os.Setenv(k, v)
		}
	}
	return markNonDumpable()
}

func markNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("marking the runner non-dumpable: %w", err)
	}
	return nil
}
