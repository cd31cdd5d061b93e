// Package proc reads what the benchmarks measure of processes from /proc: a process's
// command name, parent and CPU time.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// Stat is one process as /proc/<pid>/stat describes it.
type Stat struct {
	PID, PPID int
	// Comm is the command name, cut by the kernel to 15 characters.
	Comm string
	// CPU is the user and system time the process has used.
	CPU time.Duration
}

// Read returns the stat of process pid.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	st := string(b)
	// The command name is in parentheses and may hold spaces and parentheses itself.
	open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
	if open < 0 || end < open || end+2 > len(st) {
		return Stat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(st[end+2:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return Stat{PID: pid, PPID: ppid, Comm: st[open+1 : end], CPU: time.Duration(ut+stime) * time.Second / userHZ}, nil
}

// Children returns the processes whose parent is pid (those that exit while they are read
// are left out).
func Children(pid int) ([]Stat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := Read(p); err == nil && s.PPID == pid {
			out = append(out, s)
		}
	}
	return out, nil
}

// MachineBusy is the CPU time all CPUs have spent on anything but idle and I/O wait since
// boot (/proc/stat).
func MachineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	// cpu  user nice system idle iowait irq softirq steal ...
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
