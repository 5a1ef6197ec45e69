package doctor

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
)

func healthyLive() LiveDisk {
	return LiveDisk{
		VM: "vm", Disk: "vda", Format: "qcow2", RunState: "running", IOStatus: "ok",
		CacheKnown: true, CacheWriteback: true, CacheDirect: true, AIO: "native", Discard: "unmap", DetectZeroes: "off",
		Rates:  sample.Rates{Interval: 2 * time.Second, ReadIOPS: 100, WriteIOPS: 100, ReadLatencyMs: 1, WriteLatencyMs: 1},
		Errors: &OpErrors{},
		Host:   hoststat.Device{ReadLatencyMs: 0.8, WriteLatencyMs: 0.9}, HostDevice: "8:0",
	}
}

// Each case changes one thing of a healthy disk and must raise exactly
// that finding.
func TestLiveChecks(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(l *LiveDisk)
		check string
		want  Severity
	}{
		{"healthy", func(l *LiveDisk) {}, "", OK},
		{"paused on error", func(l *LiveDisk) { l.RunState = "io-error" }, "vm_io_error", Critical},
		{"nospace", func(l *LiveDisk) { l.IOStatus = "nospace" }, "io_status", Critical},
		{"failed growing", func(l *LiveDisk) { l.Errors.Failed = [2]uint64{3, 5} }, "failed_ops", Critical},
		{"invalid growing", func(l *LiveDisk) { l.Errors.Invalid = [2]uint64{0, 1} }, "failed_ops", Warn},
		{"old failures", func(l *LiveDisk) { l.Errors.Failed = [2]uint64{4, 4} }, "failed_ops", Info},
		{"unsafe", func(l *LiveDisk) { l.CacheDirect, l.CacheNoFlush = false, true }, "cache_mode", Critical},
		{"writethrough busy", func(l *LiveDisk) { l.CacheWriteback, l.CacheDirect = false, false }, "cache_mode", Warn},
		{"directsync quiet", func(l *LiveDisk) { l.CacheWriteback, l.Rates.WriteIOPS = false, 1 }, "cache_mode", Info},
		{"threads with direct", func(l *LiveDisk) { l.AIO = "threads" }, "aio", Info},
		{"pinned", func(l *LiveDisk) { l.Throttle.IOPSWrite = 100 }, "throttle", Warn},
		{"throttle below", func(l *LiveDisk) { l.Throttle.IOPSWrite = 1000 }, "throttle", Info},
		{"slow reads", func(l *LiveDisk) { l.Rates.ReadLatencyMs = 9 }, "latency_overhead", Info},
		{"discard ignored", func(l *LiveDisk) { l.Discard = "ignore" }, "discard", Info},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := healthyLive()
			c.edit(&l)
			r := CheckLive(l, nil)
			assertOnly(t, r, c.check, c.want)
			if c.check != "" && r.Worst() != c.want {
				t.Errorf("worst %s", r.Worst())
			}
		})
	}
}

// With only the host's cache flags known (the agent), unsafe is still
// named; nothing else is guessed.
func TestCacheModeFromHostFlagsOnly(t *testing.T) {
	l := healthyLive()
	l.CacheKnown, l.CacheDirect = false, false
	if r := CheckLive(l, nil); r.Worst() != OK {
		t.Errorf("writeback or writethrough cannot be told apart: %+v", r.Findings)
	}
	l.CacheNoFlush = true
	assertOnly(t, CheckLive(l, nil), "cache_mode", Critical)
}

// Without a sample pair or a device to compare with, the checks that
// need them say nothing rather than guess.
func TestLiveUnknownsStayQuiet(t *testing.T) {
	l := LiveDisk{VM: "vm", Disk: "vda", Host: hoststat.Device{ReadLatencyMs: math.NaN(), WriteLatencyMs: math.NaN()},
		Throttle: sample.Throttle{IOPS: 10}}
	r := CheckLive(l, nil)
	for _, f := range r.Findings {
		if f.Check != "throttle" || f.Severity != Info {
			t.Errorf("unexpected %s %s: %s", f.Check, f.Severity, f.Summary)
		}
	}
	if len(r.Notes) != 1 {
		t.Errorf("notes %q: the missing error counters should be named", r.Notes)
	}
}

// A compressed image is info on its own, and a warning when it is a
// running VM's disk the guest writes to (each write allocates a new
// cluster); offline or with one sample, nothing is known of its writes.
func TestCompressedImageWrittenTo(t *testing.T) {
	img := ImageFacts{Path: "/img.qcow2", Info: ImageInfo{Format: "qcow2"},
		Check: &CheckResult{CompressedClusters: 30, AllocatedClusters: 40}}
	compressed := func(r Report) Finding {
		for _, f := range r.Findings {
			if f.Check == "compressed_clusters" {
				return f
			}
		}
		t.Fatalf("no compressed_clusters finding: %+v", r.Findings)
		return Finding{}
	}
	l := healthyLive()
	f := compressed(CheckLive(l, &img))
	if f.Severity != Warn || !strings.Contains(f.Summary, "the guest writes to it (100.0 writes/s)") || f.Evidence["write_iops"] != "100.0" {
		t.Errorf("written to: %s %q %v", f.Severity, f.Summary, f.Evidence)
	}
	l.Rates.WriteIOPS = 0
	if f := compressed(CheckLive(l, &img)); f.Severity != Info || f.Evidence["write_iops"] != "0.0" {
		t.Errorf("read only: %s %q %v", f.Severity, f.Summary, f.Evidence)
	}
	l.Rates = sample.Rates{}
	if f := compressed(CheckLive(l, &img)); f.Severity != Info || f.Evidence["write_iops"] != "" {
		t.Errorf("one sample: %s %q %v", f.Severity, f.Summary, f.Evidence)
	}
	if img.LiveWriteIOPS != nil {
		t.Error("CheckLive changed the caller's image facts")
	}
}
