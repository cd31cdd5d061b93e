package executor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	return nil
}

// reapOrphans kills and reaps every child of this process. It runs after a
// shell call returned, while no other call can start a process, so every
// child it finds is something that call left behind: a background job, a
// daemon that detached with setsid, the grandchild of a double fork (the
// kernel reparents those to the nearest subreaper, this process). Killing a
// parent reparents its children here too, so it repeats until none is left.
func reapOrphans() {
	deadline := time.Now().Add(5 * time.Second)
	for empty := 0; empty < 2 && time.Now().Before(deadline); {
		kids := children(os.Getpid())
		for _, pid := range kids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if len(kids) == 0 {
			empty++
			continue
		}
		empty = 0
		time.Sleep(5 * time.Millisecond)
	}
}

// children lists the processes whose parent is pid, from /proc.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid(p) == pid {
			out = append(out, p)
		}
	}
	return out
}

// ppid reads the parent from /proc/PID/stat; the command name in parentheses
// may itself contain spaces and parentheses, so fields are counted after the
// last ')'.
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return -1
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return n
}
