package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/virt"
)

// libvirtStatisticsSince is the first libvirt release whose disk
// <driver> takes <statistics> (11.9.0); it returns the timed groups with
// a QEMU whose disk devices take stats-intervals (qemuStatsIntervalsSince,
// 10.2.0). Latency histograms came in 12.1.0. Earlier releases, 9.0 and
// 11.3 among them, have no such element in their schema and drop it from
// the definition.
const (
	libvirtStatisticsSince  = 11_009_000
	qemuStatsIntervalsSince = 10_002_000
)

// A domain whose disk declares <statistics><statistic interval='1'/>:
// qtune reads whatever latency the bulk stats give for it, a latency rule
// fires and is applied through libvirt's API, and the domain is never
// tainted, even with passthrough allowed: no latency figure is asked of
// QEMU behind libvirt's back. Where libvirt returns the timed group the
// rule reads the longest write of the last interval and status says
// timed-stats; where it drops the element the disk's latency is the
// counters' average, as on any disk, and the test says so.
func TestLibvirtDiskStatisticsLatencyNoTaint(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	start := time.Now()
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	ver, qemu := libvirtDaemonVersion(t, ctx, d)
	d.WriterDomainDiskT(t, "lat", 0, lab.DomainDisk{StatsIntervals: []int{1}})

	want := ver >= libvirtStatisticsSince
	live, err := d.Virsh(ctx, "dumpxml", "lat")
	if err != nil {
		t.Fatal(err)
	}
	if kept := strings.Contains(live, "<statistic interval='1'/>"); kept != want {
		t.Errorf("libvirt %s: <statistics> kept in the live XML = %v, want %v:\n%s", versionText(ver), kept, want, live)
	}
	want = want && qemu >= qemuStatsIntervalsSince
	stats, err := d.Virsh(ctx, "domstats", "--block", "lat")
	if err != nil {
		t.Fatal(err)
	}
	timed := strings.Contains(stats, ".timed_group.")
	if timed != want {
		t.Errorf("libvirt %s, QEMU %s: bulk stats carry a timed group = %v, want %v:\n%s", versionText(ver), versionText(qemu), timed, want, stats)
	}
	metric, source := "disk.write_latency_ms", sample.LatencyCounters
	if timed {
		metric, source = "disk.write_latency_max_ms", sample.LatencyTimed
	} else {
		t.Logf("libvirt %s with QEMU %s returns no timed group for the disk's <statistics> (it takes libvirt 11.9 and QEMU 10.2): the rule reads %s from the counters", versionText(ver), versionText(qemu), metric)
	}

	pol := fmt.Sprintf(`
rule "slow-writes" {
  match { domain = "lat" }
  when = %s > 0.001
  for  = "0s"
  throttle { write_iops = 150 }
}
`, metric)
	a := startAgentWith(t, bin, pol, "--allow-passthrough", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
	s := a.waitFor(t, 60*time.Second, "the latency rule applied on lat", func(s api.Status) bool { return action(s, "lat", "applied") != nil })
	var disk *api.DiskStatus
	for _, vm := range s.VMs {
		for i := range vm.Disks {
			if vm.Name == "lat" && vm.Disks[i].Name == "vda" {
				disk = &vm.Disks[i]
			}
		}
	}
	if disk == nil || disk.LatencySource != source {
		t.Errorf("status of lat/vda %+v, want latency source %s", disk, source)
	}
	if timed && (disk == nil || disk.WriteMax == nil) {
		t.Errorf("timed stats but no longest write in status: %+v", disk)
	}
	if out, err := d.Virsh(ctx, "blkdeviotune", "lat", "vda"); err != nil || !regexp.MustCompile(`write_iops_sec\s*:\s*150\b`).MatchString(out) {
		t.Errorf("blkdeviotune after the rule fired: %s %v", out, err)
	}
	if len(s.Tainted) != 0 {
		t.Errorf("status says tainted: %v", s.Tainted)
	}
	logb, err := os.ReadFile(filepath.Join(d.Dir, "log", "qemu", "lat.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logb), "custom-monitor") {
		t.Errorf("libvirt recorded a custom-monitor taint:\n%s", logb)
	}
	t.Logf("libvirt %s, QEMU %s, latency source %s, rule on %s applied and no taint, in %v", versionText(ver), versionText(qemu), source, metric, time.Since(start).Round(time.Second))
}

// libvirtDaemonVersion is the daemon's version and its QEMU's, each as
// major*1e6+minor*1e3+micro, as qtune reads them (virsh prints the
// daemon's only for a remote one).
func libvirtDaemonVersion(t *testing.T, ctx context.Context, d *lab.Libvirtd) (lib, qemu int) {
	t.Helper()
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath(), MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	c, err := v.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return versionNumber(t, c.Libvirt), versionNumber(t, c.QEMU)
}

func versionNumber(t *testing.T, s string) int {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("version %q", s)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return n(m[1])*1_000_000 + n(m[2])*1_000 + n(m[3])
}

func versionText(v int) string { return fmt.Sprintf("%d.%d.%d", v/1_000_000, v/1_000%1_000, v%1_000) }
