package qmp

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the start time in /proc/<pid>/stat: the kernel
// exports clock ticks as USER_HZ, 100 on every architecture qtune runs on.
const userHZ = 100

// ProcessStart is when a process started: exactly, as clock ticks since
// the boot named by Boot, and as a wall time to be shown (boot time plus
// the ticks, to the second the kernel gives the boot time).
type ProcessStart struct {
	Boot    string
	Ticks   uint64
	Started time.Time
}

// StartOf reads the start of process pid (field 22 of /proc/<pid>/stat),
// the boot's id and the boot time.
func StartOf(pid int) (ProcessStart, error) {
	return startOf("/proc", pid)
}

func startOf(proc string, pid int) (ProcessStart, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", proc, pid))
	if err != nil {
		return ProcessStart{}, fmt.Errorf("process start of pid %d: %w", pid, err)
	}
	ticks, err := statStartTicks(b)
	if err != nil {
		return ProcessStart{}, fmt.Errorf("process start of pid %d: %w", pid, err)
	}
	boot, err := os.ReadFile(proc + "/sys/kernel/random/boot_id")
	if err != nil {
		return ProcessStart{}, fmt.Errorf("boot id: %w", err)
	}
	btime, err := bootTime(proc + "/stat")
	if err != nil {
		return ProcessStart{}, err
	}
	started := btime.Add(time.Duration(ticks) * time.Second / userHZ)
	return ProcessStart{Boot: strings.TrimSpace(string(boot)), Ticks: ticks, Started: started}, nil
}

// statStartTicks is field 22 of a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may hold spaces and parentheses
// itself: fields are counted after the last ')'.
func statStartTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:])) // from field 3
	if len(f) < 20 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	n, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("start time %q: not a tick count", f[22-3])
	}
	return n, nil
}

func bootTime(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("boot time: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("boot time %q in %s: %w", v, path, err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("boot time: no btime line in %s", path)
}
