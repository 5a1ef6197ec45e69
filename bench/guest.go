package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/qmp"
)

// guest is a lab VM running the load generator, with a second QMP
// monitor for the benchmark (the agent holds the first) and its console
// lines stamped with the host time they appeared at.
type guest struct {
	vm   *lab.VM
	mon  *qmp.Conn
	stop chan struct{}

	mu    sync.Mutex
	lines []progressLine
}

// progressLine is one "qtune-load t=..." console line.
type progressLine struct {
	at                time.Time // host time it was seen (within 50 ms)
	mode              string
	iops              float64
	readLat, writeLat loadgen.LatHist
}

func startGuest(ctx context.Context, name string, w loadgen.Params, disk lab.Disk) (*guest, error) {
	monDir, err := os.MkdirTemp("", "qtune-bench-mon-")
	if err != nil {
		return nil, err
	}
	monPath := filepath.Join(monDir, "mon.sock")
	vm, err := lab.StartVM(ctx, lab.VMConfig{Name: name, Workload: &w, Disks: []lab.Disk{disk},
		Extra: []string{"-chardev", "socket,id=bench,path=" + monPath + ",server=on,wait=off", "-mon", "chardev=bench,mode=control"}})
	if err != nil {
		os.RemoveAll(monDir)
		return nil, err
	}
	g := &guest{vm: vm, stop: make(chan struct{})}
	// QEMU binds its sockets one after the other: the first may accept
	// before the second exists.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g.mon, err = qmp.Dial(ctx, monPath); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		vm.Stop()
		os.RemoveAll(monDir)
		return nil, fmt.Errorf("%s: second monitor: %w", name, err)
	}
	os.RemoveAll(monDir) // the socket stays open; only the path goes
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "qtune-load ready"); err != nil {
		g.close()
		return nil, err
	}
	go g.watch()
	return g, nil
}

func (g *guest) close() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	if g.mon != nil {
		g.mon.Close()
	}
	g.vm.Stop()
}

var progressRE = regexp.MustCompile(`qtune-load t=\S+ phase=\d+ mode=(\S+) .*iops=([0-9.]+)(?: rp50=\S+ rp99=\S+ rlat=(\S+))?(?: wp50=\S+ wp99=\S+ wlat=(\S+))?`)

// watch reads new console lines every 50 ms and stamps them.
func (g *guest) watch() {
	seen := 0
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			s := g.vm.Serial()
			if len(s) <= seen {
				continue
			}
			end := strings.LastIndexByte(s, '\n') + 1
			if end <= seen {
				continue
			}
			for _, l := range strings.Split(s[seen:end], "\n") {
				if p, ok := parseProgress(l); ok {
					p.at = now
					g.mu.Lock()
					g.lines = append(g.lines, p)
					g.mu.Unlock()
				}
			}
			seen = end
		}
	}
}

func parseProgress(l string) (progressLine, bool) {
	m := progressRE.FindStringSubmatch(l)
	if m == nil {
		return progressLine{}, false
	}
	p := progressLine{mode: m[1]}
	p.iops, _ = strconv.ParseFloat(m[2], 64)
	p.readLat, _ = loadgen.ParseLatHist(m[3])
	p.writeLat, _ = loadgen.ParseLatHist(m[4])
	return p, true
}

// window sums the console lines seen in [from, to): the read and write
// latencies and the mean of the reported IOPS.
func (g *guest) window(from, to time.Time) (read, write loadgen.LatHist, iops float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, p := range g.lines {
		if p.at.Before(from) || !p.at.Before(to) {
			continue
		}
		read.Merge(p.readLat)
		write.Merge(p.writeLat)
		iops += p.iops
		n++
	}
	if n > 0 {
		iops /= float64(n)
	}
	return read, write, iops
}

// measure waits d and returns the window of it.
func (g *guest) measure(ctx context.Context, d time.Duration) (read, write loadgen.LatHist, iops float64, err error) {
	from := time.Now()
	select {
	case <-ctx.Done():
		return read, write, 0, ctx.Err()
	case <-time.After(d):
	}
	// The line for the last second arrives up to a second later.
	time.Sleep(1100 * time.Millisecond)
	read, write, iops = g.window(from.Add(time.Second), time.Now())
	return read, write, iops, nil
}

// blockState is what the benchmark's own monitor sees of disk0.
type blockState struct {
	at          time.Time
	wrOps       uint64
	rdOps       uint64
	iopsWrLimit uint64
}

// blockState reads disk0's counters and write throttle.
func (g *guest) blockState(ctx context.Context) (blockState, error) {
	st := blockState{at: time.Now()}
	raw, err := g.mon.Execute(ctx, "query-blockstats", nil)
	if err != nil {
		return st, err
	}
	var stats []struct {
		QDev  string `json:"qdev"`
		Stats struct {
			Wr uint64 `json:"wr_operations"`
			Rd uint64 `json:"rd_operations"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		return st, err
	}
	raw, err = g.mon.Execute(ctx, "query-block", nil)
	if err != nil {
		return st, err
	}
	var block []struct {
		QDev     string `json:"qdev"`
		Inserted *struct {
			IOPSWr uint64 `json:"iops_wr"`
		} `json:"inserted"`
	}
	if err := json.Unmarshal(raw, &block); err != nil {
		return st, err
	}
	for _, s := range stats {
		if strings.Contains(s.QDev, "/disk0/") {
			st.wrOps, st.rdOps = s.Stats.Wr, s.Stats.Rd
		}
	}
	for _, b := range block {
		if strings.Contains(b.QDev, "/disk0/") && b.Inserted != nil {
			st.iopsWrLimit = b.Inserted.IOPSWr
		}
	}
	return st, nil
}

// benchAgent is a qtune agent process watching a directory of QMP sockets.
type benchAgent struct {
	cmd  *exec.Cmd
	addr string
	log  lockedWriter
}

// startAgent runs qtune agent with the policy files given (name → text)
// over the guests' QMP sockets, every second, with config as its agent
// config file when it is not empty.
func startAgent(ctx context.Context, o options, dir, config string, policy map[string]string, guests ...*guest) (*benchAgent, error) {
	pol, socks := mkdir(dir, "policy"), mkdir(dir, "sockets")
	for name, text := range policy {
		if err := os.WriteFile(filepath.Join(pol, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	for _, g := range guests {
		if err := os.Symlink(g.vm.QMPPath(), filepath.Join(socks, g.vm.Name+".sock")); err != nil {
			return nil, err
		}
	}
	addr, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	a := &benchAgent{addr: addr}
	a.cmd = exec.CommandContext(ctx, o.qtune, "agent", "--qmp-dir", socks, "--interval", "1s",
		"--policy", pol, "--state-dir", mkdir(dir, "state"), "--listen", addr,
		"--control-socket", filepath.Join(dir, "control.sock"), "--log-level", "warn")
	if config != "" {
		path := filepath.Join(dir, "agent.hcl")
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			return nil, err
		}
		a.cmd.Args = append(a.cmd.Args, "--config", path)
	}
	a.cmd.Stderr = &a.log
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	_, err = a.waitFor(ctx, 30*time.Second, func(s api.Status) bool { return !s.LastCycle.IsZero() })
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("agent's first cycle: %w", err)
	}
	return a, nil
}

func (a *benchAgent) stop() {
	a.cmd.Process.Signal(os.Interrupt)
	a.cmd.Wait()
}

func (a *benchAgent) status() (api.Status, error) {
	var s api.Status
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.addr + "/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitFor polls the agent's status every 100 ms until ok holds.
func (a *benchAgent) waitFor(ctx context.Context, limit time.Duration, ok func(api.Status) bool) (api.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		s, err := a.status()
		if err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return s, fmt.Errorf("not within %v (last error %v; log: %s)", limit, err, tail(a.log.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastAction is the latest action on vm with this result, if any.
func lastAction(s api.Status, vm, result string) *api.ActionStatus {
	for i := len(s.Actions) - 1; i >= 0; i-- {
		if s.Actions[i].VM == vm && s.Actions[i].Result == result {
			return &s.Actions[i]
		}
	}
	return nil
}

// lockedWriter is a process's stderr, written by exec's copier while
// the benchmark reads it.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
