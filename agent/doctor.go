package agent

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/doctor"
	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
)

// gatherTimeout bounds the checks of one image (qemu-img check of a large
// image reads all of its metadata).
const gatherTimeout = 10 * time.Minute

// diskChecks runs qtune doctor's checks on the disks of the last cycle at
// a slower pace than sampling, from one goroutine: one image at a time,
// so two qemu-img checks never run at once. The agent reads the results
// into each point (policy metrics), status and /metrics.
type diskChecks struct {
	cfg  config.DoctorConfig
	q    doctor.QemuImg
	log  hclog.Logger
	last func() *cycleSnapshot // the last cycle's points and VM states
	now  func() time.Time

	mu      sync.Mutex
	results map[string]diskResult // by "vm/disk"
	checked map[string]checkMemo  // last qemu-img check by image path
	runs    map[string]float64    // passes by kind
}

type diskResult struct {
	vm, disk string
	report   doctor.Report
	health   *sample.Health // never changed once stored: points share it
}

type checkMemo struct {
	at  time.Time
	res *doctor.CheckResult
	err error
}

func newDiskChecks(cfg config.DoctorConfig, log hclog.Logger, last func() *cycleSnapshot, now func() time.Time) *diskChecks {
	return &diskChecks{cfg: cfg, q: doctor.QemuImg{Path: cfg.QemuImg}, log: log, last: last, now: now,
		results: map[string]diskResult{}, checked: map[string]checkMemo{}, runs: map[string]float64{}}
}

// run passes over the disks every interval until ctx ends; the first pass
// waits one interval too, so that it finds a cycle's points.
func (c *diskChecks) run(ctx context.Context, first time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.pass(ctx)
		t.Reset(c.cfg.Interval)
	}
}

// pass checks every disk of the last cycle and forgets disks gone.
func (c *diskChecks) pass(ctx context.Context) {
	snap := c.last()
	if snap == nil {
		return
	}
	points := snap.points
	facts := make([]doctor.ImageFacts, len(points))
	ok := make([]bool, len(points))
	for i, p := range points {
		if p.Disk.Path == "" || p.Disk.Path[0] != '/' {
			continue
		}
		facts[i], ok[i] = c.gather(ctx, p), true
		if ctx.Err() != nil {
			return
		}
	}
	doctor.ShareFilesystems(facts)
	results := map[string]diskResult{}
	for i, p := range points {
		l := liveFromPoint(p, snap.vmStates)
		var f *doctor.ImageFacts
		if ok[i] && facts[i].Path != "" {
			f = &facts[i]
		}
		r := doctor.CheckLive(l, f)
		results[p.Disk.VM+"/"+p.Disk.Name] = diskResult{vm: p.Disk.VM, disk: p.Disk.Name, report: r, health: healthOf(r, f, c.now())}
	}
	c.mu.Lock()
	c.results = results
	c.runs["cheap"]++
	c.mu.Unlock()
}

// gather reads an image's facts; qemu-img check runs only when the last
// one is older than check_interval, and its last result stands in between.
func (c *diskChecks) gather(ctx context.Context, p sample.Point) doctor.ImageFacts {
	path := p.Disk.Path
	c.mu.Lock()
	memo, seen := c.checked[path]
	c.mu.Unlock()
	due := !seen || c.now().Sub(memo.at) >= c.cfg.CheckInterval
	gctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	f, err := c.q.Gather(gctx, path, p.Disk.L2CacheSize, !due)
	if err != nil {
		c.log.Debug("disk checks: image not read", "vm", p.Disk.VM, "disk", p.Disk.Name, "path", path, "error", err.Error())
		return doctor.ImageFacts{}
	}
	if due && p.Disk.Format == "qcow2" {
		c.mu.Lock()
		c.checked[path] = checkMemo{at: c.now(), res: f.Check, err: f.CheckErr}
		c.runs["qemu-img-check"]++
		c.mu.Unlock()
	} else if seen {
		f.Check, f.CheckErr = memo.res, memo.err
	}
	return f
}

// liveFromPoint is what one cycle's point (and its VM's state, where the
// backend says) tells the live checks. The cache mode and aio checks are
// left to qtune doctor: the sample carries the host cache flags, not the
// guest's write cache; nor does it carry failed operation counters.
func liveFromPoint(p sample.Point, states map[string]vmState) doctor.LiveDisk {
	d := p.Disk
	run := ""
	if st, ok := states[d.VM]; ok {
		run = st.State
		if st.State == "paused" && st.Reason == "ioerror" {
			run = "io-error" // QEMU's name, which the check reads
		}
	}
	return doctor.LiveDisk{
		RunState: run,
		VM:       d.VM, Disk: d.Name, Image: d.Path, Format: d.Format, IOStatus: d.IOStatus,
		CacheDirect: d.CacheDirect, CacheNoFlush: d.CacheNoFlush, Throttle: d.Throttle,
		VirtualSize: d.VirtualSize, Allocation: d.Allocation, L2Cache: d.L2CacheSize, Rates: p.Rates,
		HostDevice: d.HostDevice, Host: hoststat.Device{ReadLatencyMs: d.HostDevReadLatencyMs, WriteLatencyMs: d.HostDevWriteLatencyMs},
	}
}

// healthOf sums a report up for the policy metrics.
func healthOf(r doctor.Report, f *doctor.ImageFacts, at time.Time) *sample.Health {
	h := &sample.Health{At: at, Fragmentation: math.NaN(), LeakedClusters: -1, FileExtents: -1, FSFreeRatio: math.NaN(), CompressedRatio: math.NaN(), Worst: int(r.Worst())}
	if f == nil {
		return h
	}
	h.Corrupt = f.Info.FormatSpecific.Data.Corrupt
	h.Encrypted = f.Info.Encrypted
	h.SnapshotCount = len(f.Info.Snapshots)
	if f.ExtentsErr == nil {
		h.FileExtents = int64(f.Extents)
	}
	if f.FSErr == nil && f.FS.Size > 0 {
		h.FSFreeRatio = float64(f.FS.Free) / float64(f.FS.Size)
	}
	if ck := f.Check; ck != nil {
		h.Corrupt = h.Corrupt || ck.Corruptions > 0
		h.LeakedClusters = ck.Leaks
		if ck.AllocatedClusters > 0 {
			h.Fragmentation = float64(ck.FragmentedClusters) / float64(ck.AllocatedClusters)
			h.CompressedRatio = float64(ck.CompressedClusters) / float64(ck.AllocatedClusters)
		}
	}
	return h
}

// health is the last result of a disk's checks, nil before any.
func (c *diskChecks) health(key string) *sample.Health {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.results[key].health
}

// findings lists every finding worse than ok, worst first.
func (c *diskChecks) findings() []api.FindingStatus {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []api.FindingStatus
	for _, res := range c.results {
		for _, f := range res.report.Findings {
			if f.Severity > doctor.OK {
				out = append(out, api.FindingStatus{VM: res.vm, Disk: res.disk, Check: f.Check, Severity: f.Severity.String(),
					Summary: f.Summary, Evidence: f.Evidence, At: res.health.At})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		si, sj := severityRank(out[i].Severity), severityRank(out[j].Severity)
		if si != sj {
			return si > sj
		}
		return out[i].VM+"/"+out[i].Disk+"/"+out[i].Check < out[j].VM+"/"+out[j].Disk+"/"+out[j].Check
	})
	return out
}

func severityRank(s string) int {
	for i := doctor.OK; i <= doctor.Critical; i++ {
		if i.String() == s {
			return int(i)
		}
	}
	return 0
}

var (
	findingDesc = prometheus.NewDesc("qtune_disk_finding", "1 for each finding of the disk checks worse than ok (docs/doctor.md names every check).",
		[]string{"vm", "disk", "check", "severity"}, nil)
	checkRunsDesc = prometheus.NewDesc("qtune_disk_check_runs_total", "Passes of the disk checks over every disk (cheap) and qemu-img checks run (qemu-img-check).",
		[]string{"kind"}, nil)
)

// Describe and Collect make the last pass's findings metrics.
func (c *diskChecks) Describe(ch chan<- *prometheus.Desc) { ch <- findingDesc; ch <- checkRunsDesc }

func (c *diskChecks) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.findings() {
		ch <- prometheus.MustNewConstMetric(findingDesc, prometheus.GaugeValue, 1, f.VM, f.Disk, f.Check, f.Severity)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kind := range []string{"cheap", "qemu-img-check"} {
		ch <- prometheus.MustNewConstMetric(checkRunsDesc, prometheus.CounterValue, c.runs[kind], kind)
	}
}

// startDiskChecks starts the disk checks when enabled. The first pass
// waits for two cycles, the first with rates.
func (a *Agent) startDiskChecks(ctx context.Context, wg *sync.WaitGroup) {
	if !a.cfg.Doctor.Enabled {
		return
	}
	a.checks = newDiskChecks(a.cfg.Doctor, a.log.Named("doctor"), a.m.last.Load, time.Now)
	a.m.reg.MustRegister(a.checks)
	wg.Add(1)
	go func() { defer wg.Done(); a.checks.run(ctx, 2*a.cfg.Interval+time.Second) }()
}
