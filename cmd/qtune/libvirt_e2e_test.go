package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
)

// metricValue reads one sample of the agent's metrics ("" labels: the
// series without labels); -1 when absent.
func metricValue(text, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

const (
	xmlReads  = `qtune_backend_call_duration_seconds_count{backend="libvirt",call="get_domain_xml"}`
	cyclesRun = `qtune_cycle_duration_seconds_count`
)

// libvirtDriftByEvent changes the throttle qtune holds on t1 with
// virsh blkdeviotune behind its back: libvirt's tunable event makes the
// next cycle read t1's XML again, and the firing rule's executor sees
// the drift there, within one interval, with no per-cycle polling.
func libvirtDriftByEvent(t *testing.T, ctx context.Context, a *runningAgent, d *lab.Libvirtd) {
	if _, err := d.Virsh(ctx, "blkdeviotune", "t1", "vda", "--write-iops-sec", "300", "--live"); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	s := a.waitFor(t, 15*time.Second, "the drift on t1", func(s api.Status) bool { return action(s, "t1", "drift") != nil })
	seen := action(s, "t1", "drift").At.Sub(changed)
	t.Logf("drift seen %v after blkdeviotune (interval %v)", seen.Round(time.Millisecond), e2eInterval)
	if seen > e2eInterval+time.Second {
		t.Errorf("drift seen after %v, want within one interval (%v) plus the cycle", seen, e2eInterval)
	}
	if th := s.VMs[0].Disks[0].Throttle; th == nil || th.IOPSWrite != 300 {
		t.Errorf("status throttle after the drift: %+v", th)
	}
	// No per-cycle polling: over several cycles with the rule still
	// firing, the XML is not read again and no per-disk throttle call is
	// made by the sampler.
	before := a.metrics(t)
	time.Sleep(6 * e2eInterval)
	after := a.metrics(t)
	cycles := metricValue(after, cyclesRun) - metricValue(before, cyclesRun)
	reads := metricValue(after, xmlReads) - metricValue(before, xmlReads)
	t.Logf("%v cycles, %v XML reads", cycles, reads)
	if cycles < 4 || reads > 1 {
		t.Errorf("%v cycles made %v XML reads; facts are read on events, not every cycle", cycles, reads)
	}
	if regexp.MustCompile(`call="get_block_io_tune"`).MatchString(after) {
		t.Error("the sampler still reads throttles per disk")
	}
}

// libvirtHotPlug attaches a disk to the running t1: the device-added
// event makes it appear with its facts from the XML.
func libvirtHotPlug(t *testing.T, ctx context.Context, a *runningAgent, d *lab.Libvirtd) {
	img := filepath.Join(t.TempDir(), "hot.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 16<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Virsh(ctx, "attach-disk", "t1", img, "vdb", "--live", "--subdriver", "qcow2", "--targetbus", "virtio"); err != nil {
		t.Fatalf("attach-disk: %v %s", err, out)
	}
	a.waitFor(t, 15*time.Second, "the hot-plugged vdb with its facts", func(s api.Status) bool {
		for _, vm := range s.VMs {
			for _, dk := range vm.Disks {
				if vm.Name == "t1" && dk.Name == "vdb" && dk.Format == "qcow2" {
					return true
				}
			}
		}
		return false
	})
}

// libvirtPausedDomain suspends t1: it stays sampled, and its state and
// reason are in status and metrics.
func libvirtPausedDomain(t *testing.T, ctx context.Context, a *runningAgent, d *lab.Libvirtd) {
	if _, err := d.Virsh(ctx, "suspend", "t1"); err != nil {
		t.Fatal(err)
	}
	defer d.Virsh(ctx, "resume", "t1")
	s := a.waitFor(t, 15*time.Second, "t1 paused in status", func(s api.Status) bool {
		return len(s.VMs) == 1 && s.VMs[0].State == "paused"
	})
	if s.VMs[0].StateReason != "user" || len(s.VMs[0].Disks) == 0 {
		t.Errorf("paused t1 in status: %+v", s.VMs[0])
	}
	if v := metricValue(a.metrics(t), `qtune_vm_state{reason="user",state="paused",vm="t1"}`); v != 1 {
		t.Errorf("qtune_vm_state of paused t1: %v", v)
	}
	if _, err := d.Virsh(ctx, "resume", "t1"); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 15*time.Second, "t1 running again", func(s api.Status) bool {
		return len(s.VMs) == 1 && s.VMs[0].State == "running"
	})
}
