package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// libvirtKnob reads the domain's vda knob with the agent down: the
// throttle through libvirt's API (its <iotune>), the cache mode and the
// L2 cache by QMP passthrough, as the agent does. QEMU cannot report the
// L2 cache size: that read is the command line's.
func libvirtKnob(t *testing.T, d *lab.Libvirtd, k policy.Knob) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if k == policy.KnobThrottle {
		th, err := v.BlockIOTune(ctx, "loud", "vda", false)
		if err != nil {
			t.Fatal(err)
		}
		th.Group = ""
		return state.OfThrottle(th).String()
	}
	b := tuning.NewLibvirtBackend(v, tuning.LibvirtBackendOptions{AllowPassthrough: true, PidDir: libvirtPidDir(d)})
	s, err := b.Read(ctx, state.Target{VM: "loud", Disk: "vda"}, k)
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

func libvirtPidDir(d *lab.Libvirtd) string { return filepath.Join(d.Dir, "run", "libvirt", "qemu") }

// The failpoint suite under libvirt, on one daemon and one domain: the
// agent kills itself at each failpoint of a change of each knob and is
// started again with the same policy or with the rule removed. The
// throttle goes through libvirt's API; libvirt cannot change cache mode
// or the L2 cache live, so those go by QMP passthrough, which the agent
// is allowed here (it taints the domain; without allow_passthrough they
// are refused before any intent is written: tuning's
// TestRealLibvirtTuning).
func TestFailpointsLibvirt(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildFailpointQtune(t)
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "loud", 0)
	backend := []string{"--libvirt-socket", d.SocketPath(), "--libvirt-pid-dir", libvirtPidDir(d), "--allow-passthrough"}
	for _, k := range []policy.Knob{policy.KnobThrottle, policy.KnobCache, policy.KnobL2Cache} {
		read := func() string { return libvirtKnob(t, d, k) }
		original := read()
		rule := failpointRule(k)
		for _, step := range tuning.Failpoints {
			for _, removed := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/%s", k, step, map[bool]string{false: "same-policy", true: "rule-removed"}[removed])
				t.Run(name, func(t *testing.T) { crashAndRestart(t, bin, read, k, step, rule, original, removed, backend...) })
			}
		}
	}
	t.Run("l2_cache/domain-restarted", func(t *testing.T) { l2DomainRestartedLibvirt(t, bin, d, backend) })
	// Last: its revert writes the original size into the definition.
	t.Run("l2_cache/persisted-killed-while-held", func(t *testing.T) { l2KilledWhileHeldLibvirt(t, bin, backend) })
}

// A live L2 cache change is gone with the QEMU process that had it: the
// domain started again keeps its UUID, and so qtune's record, but the
// record no longer says what is in force. The agent reports the new
// process's size and its rule, true all along, sets the size again.
func l2DomainRestartedLibvirt(t *testing.T, bin string, d *lab.Libvirtd, backend []string) {
	rule := "rule \"change\" {\n  when = disk.virtual_size > 0\n  for = \"1s\"\n  cooldown = \"1s\"\n  l2_cache { size = \"2MiB\" }\n}\n"
	a := startAgentWith(t, bin, rule, backend...)
	a.waitFor(t, 30*time.Second, "the L2 cache set and recorded", func(s api.Status) bool {
		return len(s.Owned) == 1 && s.Owned[0].Phase == state.PhaseApplied
	})
	waitRecordedL2(t, a, "loud", 2<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var destroyed time.Time
	for _, cmd := range []string{"destroy", "start"} {
		if out, err := d.Virsh(ctx, cmd, "loud"); err != nil {
			t.Fatalf("virsh %s: %v\n%s", cmd, err, out)
		}
		if destroyed.IsZero() {
			destroyed = time.Now() // a cycle after this sees the new QEMU or none
		}
	}
	applied := func() int { return strings.Count(grepLines(a.log.String(), "knob=l2_cache"), "result=applied") }
	deadline := time.Now().Add(30 * time.Second)
	for applied() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the rule did not set the L2 cache of the new QEMU again:\n%s", grepLines(a.log.String(), "tuning action"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitRecordedL2(t, a, "loud", 2<<20)
	// The new QEMU's first points, before the rule set it again, had its
	// own size, not the record's.
	var first *sample.Point
	for _, c := range a.history(t) {
		for i, p := range c.Points {
			if p.Disk.VM == "loud" && c.At.After(destroyed) && first == nil {
				first = &c.Points[i]
			}
		}
	}
	if first == nil || first.Disk.L2CacheSize == 2<<20 || len(first.Disk.Recorded) > 0 {
		t.Fatalf("first point after the domain started again: %+v; want the new QEMU's size, not the record", first)
	}
	removeRule(t, a)
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 20*time.Second, "nothing owned", func(s api.Status) bool { return len(s.Owned) == 0 })
	t.Logf("first L2 figure after the restart %d; decisions:\n%s", first.Disk.L2CacheSize, grepLines(a.log.String(), "tuning action"))
}

// An L2 cache set with persist (the definition's rewrite makes libvirt
// send a lifecycle event, after which the backend knows only the command
// line again), the agent killed with SIGKILL while it holds it and
// started again: what it reports for the disk is its record from the
// first sample on.
func l2KilledWhileHeldLibvirt(t *testing.T, bin string, backend []string) {
	rule := strings.Replace(failpointRule(policy.KnobL2Cache), "l2_cache {", "persist = true\n  l2_cache {", 1)
	a := startAgentWith(t, bin, rule, backend...)
	a.waitFor(t, 30*time.Second, "the L2 cache set and recorded", func(s api.Status) bool {
		return len(s.Owned) == 1 && s.Owned[0].Phase == state.PhaseApplied
	})
	waitRecordedL2(t, a, "loud", 2<<20)
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done
	a = a.start(t, bin, backend...)
	st := a.waitFor(t, 20*time.Second, "the disk in status", func(s api.Status) bool { _, _, ok := statusL2(s, "loud"); return ok })
	if size, recorded, _ := statusL2(st, "loud"); size != 2<<20 || !recorded {
		t.Fatalf("after the restart status shows %d (recorded %v); want the record's 2 MiB", size, recorded)
	}
	historyL2(t, a, "loud", 2<<20)
	removeRule(t, a)
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 20*time.Second, "nothing owned", func(s api.Status) bool { return len(s.Owned) == 0 })
	if lineWith(a.log.String(), "knob=l2_cache", "result=applied") {
		t.Fatalf("the L2 cache was set again although the record says it is in force:\n%s", grepLines(a.log.String(), "tuning action"))
	}
	t.Logf("decisions after the restart:\n%s", grepLines(a.log.String(), "tuning action"))
}
