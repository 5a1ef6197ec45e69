package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, 100 on every Linux qtune runs on.
const clockTick = 100

// cpuSeconds is the user+system CPU time process pid has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	// The command name may hold spaces; fields count from after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of %d: short stat line", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTick, nil
}

// rssMiB is process pid's resident set size.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%f", &kb)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("rss of %d: no VmRSS", pid)
}

// sumCPU adds the CPU time of several processes.
func sumCPU(pids []int) (float64, error) {
	var total float64
	for _, p := range pids {
		c, err := cpuSeconds(p)
		if err != nil {
			return 0, err
		}
		total += c
	}
	return total, nil
}
