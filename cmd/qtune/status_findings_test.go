package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qtune/qtune/api"
)

func TestStatusPrintsDiskFindings(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{Findings: []api.FindingStatus{
		{VM: "web-1", Disk: "vda", Check: "io_status", Severity: "critical", Summary: "io-status nospace"},
		{VM: "db-1", Disk: "vdb", Check: "internal_snapshots", Severity: "warn", Summary: "6 internal snapshots"},
	}})
	out := b.String()
	i, j := strings.Index(out, "critical web-1/vda io_status: io-status nospace"), strings.Index(out, "warn     db-1/vdb internal_snapshots: 6 internal snapshots")
	if !strings.Contains(out, "DISK FINDINGS") || i < 0 || j < i {
		t.Fatalf("status output:\n%s", out)
	}
}

// A disk's L2 cache that is qtune's record, not a reading, says so.
func TestStatusPrintsRecordedL2(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{VMs: []api.VMStatus{{Name: "web-1", Disks: []api.DiskStatus{
		{Name: "vda", L2CacheSize: 2 << 20, Recorded: []string{"l2_cache"}},
		{Name: "vdb", L2CacheSize: 8 << 10},
	}}}})
	out := b.String()
	if !strings.Contains(out, "l2 cache 2MiB: qtune's record of what it set (QEMU cannot report it)") || strings.Count(out, "l2 cache") != 1 {
		t.Fatalf("status output:\n%s", out)
	}
}

// Status says whether latency histograms are on, why, and which rules'
// p95/p99 metrics stay unknown.
func TestStatusPrintsHistograms(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{Histograms: api.HistogramStatus{Why: "disabled by config", Unknown: []string{"protect-neighbours"}}})
	for _, want := range []string{"latency histograms off (disabled by config)", "p95/p99 metrics stay unknown for rules: protect-neighbours"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// Status says how often each VM is sampled and why.
func TestStatusPrintsCadences(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{VMs: []api.VMStatus{
		{Name: "db-1", Cadence: "1s", CadenceReason: "watched: rule calm pending"},
		{Name: "web-1", Cadence: "10s", CadenceReason: "quiet"},
	}})
	out := b.String()
	if !strings.Contains(out, "SAMPLING") || !strings.Contains(out, "db-1             every 1s    watched: rule calm pending") ||
		!strings.Contains(out, "web-1            every 10s   quiet") {
		t.Fatalf("status output:\n%s", out)
	}
}
