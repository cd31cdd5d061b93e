package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is an executor the runner started as its child (local mode).
type Process struct {
	// Socket is where it listens.
	Socket string
	// Isolated is true when it runs in its own user, PID and mount
	// namespaces: its tools then see no process but their own in /proc.
	Isolated bool

	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// Start runs `exe executor` over workspace as a child with exactly env (the
// caller leaves every secret out). With isolate it asks the kernel for new
// user, PID and mount namespaces, so that a tool listing /proc sees neither
// the runner nor the shell that started it; where the kernel refuses, it
// falls back to a plain child (reported by Isolated). The child dies with the
// runner (Pdeathsig) and, as PID 1 of its namespace or as a subreaper, takes
// every process its tools started with it.
func Start(exe, workspace string, env []string, stderr io.Writer, isolate bool) (*Process, error) {
	base := os.TempDir()
	if len(base) > 60 { // a Unix socket path holds at most 107 bytes
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "agentry-executor-")
	if err != nil {
		return nil, fmt.Errorf("executor socket directory: %w", err)
	}
	p := &Process{Socket: filepath.Join(dir, "executor.sock"), dir: dir}
	start := func(isolated bool) error {
		args := []string{"executor", "--socket", p.Socket, "--workspace", workspace}
		attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if isolated {
			args = append(args, "--mount-proc")
			attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS
			attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
			attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
			attr.GidMappingsEnableSetgroups = false
		}
		cmd := exec.Command(exe, args...)
		cmd.Env, cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, workspace, nil, stderr, stderr
		cmd.SysProcAttr = attr
		if err := cmd.Start(); err != nil {
			return err
		}
		p.cmd, p.Isolated, p.done = cmd, isolated, make(chan struct{})
		go func() { _ = cmd.Wait(); close(p.done) }()
		return nil
	}
	if err := start(isolate); err != nil {
		if err := start(false); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("starting the tool executor: %w", err)
		}
	}
	return p, nil
}

// Exited is closed when the executor process has ended.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop ends the executor (and with it every process its tools left) and
// removes its socket directory.
func (p *Process) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = os.RemoveAll(p.dir)
}

// MountProc gives the executor's new PID namespace its own /proc, so that a
// listing shows only the executor and its tools' processes. It runs first
// thing in an executor started with Isolated.
func MountProc() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	return nil
}

// WaitReady waits until the child answers on its socket, or fails fast when it
// exits first.
func (p *Process) WaitReady(ctx context.Context, c *Client) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	info, err := c.Wait(ctx)
	if err != nil {
		select {
		case <-p.done:
			return Info{}, errors.New("the tool executor exited at start (its error is above)")
		default:
		}
	}
	return info, err
}
