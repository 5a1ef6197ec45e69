package facts

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The activity signal: how much I/O a VM's QEMU process moved since the
// last cycle, read from /proc/<pid>/io, which costs no call to libvirt
// or QEMU. read_bytes and write_bytes are what reached the storage layer
// (O_DIRECT included: cache='none'); rchar and wchar are every byte the
// process read or wrote through a system call, and so also the guest's
// reads served from the host's page cache (cache='writeback', aio=threads)
// — and the monitor's own traffic, which a sample makes.
//
// Measured with bench sampling-cadence (lab TCG guests, 20 qcow2 disks
// each, a host at load 20 on 2 cores, nothing sampling): a guest writing
// 4 KiB blocks at 300 a second with cache='none' moved up to 1121 KiB/s
// of read_bytes+write_bytes and 1145 KiB/s of rchar+wchar (O_DIRECT
// writes count in both); an idle guest 0 B/s and 3 KiB/s; a paused one
// 0 and 0. Not measured: a sample's own monitor traffic (estimated at
// ~100 KiB for the query-blockstats and query-named-block-nodes answers
// of 20 disks, so the char threshold sits ten times above it) and reads
// served from the host's page cache, which move rchar only: a guest
// reading less than 1 MiB/s that way (256 4-KiB reads a second) is not
// busy by this signal. The thresholds sit far above the idle figures and
// well below a guest doing I/O at a rate any rule would act on
// (docs/operations.md, "Sampling cadence").
const (
	// busyStorageBPS: read_bytes+write_bytes a second that make a VM busy.
	busyStorageBPS = 64 << 10
	// busyCharBPS: rchar+wchar a second that make a VM busy; above a
	// sample's own monitor traffic averaged over a cycle.
	busyCharBPS = 1 << 20
)

// procIO is the counters of /proc/<pid>/io that the signal reads.
type procIO struct {
	rchar, wchar, readBytes, writeBytes uint64
}

// readProcIO reads a process's I/O counters; procRoot is "/proc" but in
// tests.
func readProcIO(procRoot string, pid int) (procIO, error) {
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/io", procRoot, pid))
	if err != nil {
		return procIO{}, err
	}
	var io procIO
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return procIO{}, fmt.Errorf("%s/%d/io: %s: %w", procRoot, pid, k, err)
		}
		switch k {
		case "rchar":
			io.rchar = n
		case "wchar":
			io.wchar = n
		case "read_bytes":
			io.readBytes = n
		case "write_bytes":
			io.writeBytes = n
		}
	}
	return io, nil
}

// Cadence reasons: why a VM is sampled every interval, or seldom.
const (
	ReasonAll       = "every VM every interval" // idle_interval at or below interval
	ReasonNew       = "first sample"
	ReasonBusy      = "busy"      // its QEMU moved I/O above the thresholds
	ReasonNoSignal  = "no signal" // its QEMU process could not be read
	ReasonQuiet     = "quiet"     // sampled every idle interval
	ReasonWatchedBy = "watched: " // followed by what the agent said
)

// CadenceInfo is how often a VM is sampled and why.
type CadenceInfo struct {
	Every  time.Duration
	Reason string
	// Last is when the VM was last sampled.
	Last time.Time
}

// cadence decides which VMs a cycle samples: every interval a VM that is
// busy by its process's I/O, or that the agent watches (Options.Watched:
// a rule pending or firing on it, a knob held, a job running), or whose
// process cannot be read; every idle interval the rest.
type cadence struct {
	interval, idle time.Duration
	watched        func(vm string) string
	procRoot       string
	now            func() time.Time // time.Now but in tests

	mu   sync.Mutex
	vms  map[string]*vmCadence
	info map[string]CadenceInfo // as of the last cycle
}

type vmCadence struct {
	pid    int
	io     procIO
	ioAt   time.Time
	ioOK   bool
	last   time.Time // last sampled
	reads  int       // reads that succeeded: rates need two
	reason string
}

func newCadence(o Options) *cadence {
	w := o.Watched
	if w == nil {
		w = func(string) string { return "" }
	}
	return &cadence{interval: o.Interval, idle: o.IdleInterval, watched: w, procRoot: "/proc", now: time.Now, vms: map[string]*vmCadence{}, info: map[string]CadenceInfo{}}
}

// enabled says whether some VMs may be sampled less often than others.
func (c *cadence) enabled() bool { return c.idle > c.interval }

// dueVM is a VM a cycle considers: its name and its QEMU process (0 when
// unknown).
type dueVM struct {
	name string
	pid  int
}

// due returns which of vms to sample at now. Every VM not listed is
// forgotten.
func (c *cadence) due(now time.Time, vms []dueVM) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]bool, len(vms))
	info := make(map[string]CadenceInfo, len(vms))
	present := make(map[string]bool, len(vms))
	for _, v := range vms {
		present[v.name] = true
		st := c.vms[v.name]
		if st == nil || st.pid != v.pid {
			st = &vmCadence{pid: v.pid, last: now}
			if old := c.vms[v.name]; old != nil {
				st.last = old.last
			}
			c.vms[v.name] = st
		}
		busy, ok := false, true
		if c.enabled() && st.reads > 0 {
			busy, ok = c.busy(now, st)
		}
		reason := ""
		switch {
		case !c.enabled():
			reason = ReasonAll
		case st.reads < 2: // until it has rates, and while its reads fail
			reason = ReasonNew
		case busy:
			reason = ReasonBusy
		case !ok:
			reason = ReasonNoSignal
		default:
			if w := c.watched(v.name); w != "" {
				reason = ReasonWatchedBy + w
			}
		}
		every := c.interval
		if reason == "" {
			reason, every = ReasonQuiet, c.idle
		}
		// Half an interval early is on time: the cycle ticks every
		// interval, so an idle interval of ten ticks is sampled at the
		// tenth, not the eleventh.
		if every == c.interval || now.Sub(st.last) >= every-c.interval/2 {
			out[v.name] = true
			st.last = now
		}
		st.reason = reason
		info[v.name] = CadenceInfo{Every: every, Reason: reason, Last: st.last}
	}
	for name := range c.vms {
		if !present[name] {
			delete(c.vms, name)
		}
	}
	c.info = info
	return out
}

// busy reads st's process counters and says whether it moved more than
// the thresholds since the last read; ok is false when it could not be
// read.
func (c *cadence) busy(now time.Time, st *vmCadence) (busy, ok bool) {
	if st.pid <= 0 {
		return false, false
	}
	io, err := readProcIO(c.procRoot, st.pid)
	if err != nil {
		st.ioOK = false
		return false, false
	}
	prev, prevAt, had := st.io, st.ioAt, st.ioOK
	st.io, st.ioAt, st.ioOK = io, now, true
	if !had {
		return true, true // no rate yet: sample, and know next cycle
	}
	secs := now.Sub(prevAt).Seconds()
	if secs <= 0 {
		return false, true
	}
	storage := float64(delta(io.readBytes, prev.readBytes)+delta(io.writeBytes, prev.writeBytes)) / secs
	chars := float64(delta(io.rchar, prev.rchar)+delta(io.wchar, prev.wchar)) / secs
	return storage >= busyStorageBPS || chars >= busyCharBPS, true
}

// delta is a counter's increase; a counter that went back (a new
// process under the same pid) counts from zero.
func delta(now, before uint64) uint64 {
	if now < before {
		return now
	}
	return now - before
}

// read notes that vm's read succeeded (its disks came back).
func (c *cadence) read(vm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.vms[vm]; st != nil {
		st.reads++
	}
}

// infos is every VM's cadence as of the last cycle.
func (c *cadence) infos() map[string]CadenceInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}
