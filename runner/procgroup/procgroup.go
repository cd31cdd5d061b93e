// Package procgroup runs a shell command as the leader of a process group of its own, so
// that a timeout or a cancellation ends everything the command started, not only the shell.
// The bash tool and `runner setup` run commands this way.
package procgroup

import (
	"os/exec"
	"syscall"
	"time"
)

// waitDelay bounds how long a backgrounded grandchild that holds the output pipe open keeps
// Wait blocked after the command itself exited.
const waitDelay = 2 * time.Second

// Run runs cmd in a new process group that is killed (SIGKILL) whole when cmd's context
// ends, and once more after cmd exits: a process that detached from the shell but stayed
// in the group outlives neither. The error is cmd.Run's (exec.ErrWaitDelay when a
// background process kept the output open).
func Run(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return err
}
