package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// loudThenCalm writes as fast as it can for loud, then idles.
func loudThenCalm(loud time.Duration) *loadgen.Params {
	w := loadgen.Defaults()
	w.Loops, w.Span = 1, 16<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Duration: loud}, {Pattern: loadgen.Idle, Duration: time.Hour}}
	return &w
}

// migrationPolicy is e2ePolicy with a throttle low enough that a TCG
// guest on a loaded host reaches it on either host: a disk at its
// throttle is censored, so the rule holds while the guest stays loud.
const migrationPolicy = `
rule "calm-noisy-writers" {
  when        = disk.write_iops > 200
  for         = "3s"
  clear_after = "4s"
  cooldown    = "2s"
  throttle {
    write_iops = 15
  }
}
`

func labAgent(t *testing.T, bin string, d *lab.Libvirtd) *runningAgent {
	return startAgentWith(t, bin, migrationPolicy, "--log-level", "debug", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
}

func recordsOf(s api.Status, vm string) []api.OwnedStatus {
	var out []api.OwnedStatus
	for _, o := range s.Owned {
		if o.VM == vm {
			out = append(out, o)
		}
	}
	return out
}

var writeIOPS = regexp.MustCompile(`write_iops_sec\s*:\s*(\d+)`)

func throttleOn(t *testing.T, ctx context.Context, d *lab.Libvirtd, vm string) string {
	t.Helper()
	out, err := d.Virsh(ctx, "blkdeviotune", vm, "vda")
	m := writeIOPS.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("blkdeviotune %s: %v %s", vm, err, out)
	}
	return m[1]
}

// A loud guest throttled by the agent on host A is live-migrated to host
// B, where another agent runs the same policy: the throttle goes on
// holding there, owned by B with A's original, A drops its records at
// the migrated-out event, and when the guest calms B restores the
// original. The domain's metadata is left empty.
func TestMigratedThrottleReleasedOnDestination(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const loud = 45 * time.Second
	ds := lab.StartLibvirtdsT(t, 2)
	hostA, hostB := ds[0], ds[1]
	img := filepath.Join(t.TempDir(), "mig.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	dom := hostA.DefineDomainT(t, lab.DomainSpec{Name: "mig", Workload: loudThenCalm(loud),
		Disks: []lab.DomainDisk{{Target: "vda", Image: img}}})
	if err := dom.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	loudSince := time.Now()
	a := labAgent(t, bin, hostA)
	b := labAgent(t, bin, hostB)

	a.waitFor(t, 40*time.Second, "a throttle on mig at A", func(s api.Status) bool { return action(s, "mig", "applied") != nil })
	if got := throttleOn(t, ctx, hostA, "mig"); got != "15" {
		t.Fatalf("throttle on A: %s", got)
	}
	meta, err := hostA.Virsh(ctx, "metadata", "mig", "https://github.com/qtune/qtune/xmlns/ownership")
	if err != nil || !strings.Contains(meta, `rule="calm-noisy-writers"`) {
		t.Fatalf("the domain does not carry the record: %v %s", err, meta)
	}
	took, err := dom.MigrateTo(ctx, hostB)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated %v after the guest got loud, in %v", time.Since(loudSince).Round(time.Second), took.Round(time.Millisecond))

	// Held: the rule fires on B too. The first interval after the
	// switch-over may show the guest idle (its vCPUs were paused), which
	// starts the rule resolving; at the throttle it is censored and then
	// neither clears nor fires again, so either state holds the knob.
	s := b.waitFor(t, 20*time.Second, "B owning the carried throttle", func(s api.Status) bool {
		o := recordsOf(s, "mig")
		return len(o) == 1 && (o[0].State == api.OwnedHeld || o[0].State == api.OwnedReleasing)
	})
	o := recordsOf(s, "mig")[0]
	if o.Rule != "calm-noisy-writers" || o.Original.Throttle == nil || o.Original.Throttle.Active() ||
		o.Applied.Throttle == nil || o.Applied.Throttle.IOPSWrite != 15 {
		t.Errorf("B's record: %+v", o.Owned)
	}
	if action(s, "mig", "adopted") == nil || action(s, "mig", "applied") != nil {
		t.Errorf("B's actions: want the record adopted, nothing applied anew: %+v", s.Actions)
	}
	if got := throttleOn(t, ctx, hostB, "mig"); got != "15" {
		t.Errorf("throttle on B after the migration: %s", got)
	}
	a.waitFor(t, 10*time.Second, "A without records of mig", func(s api.Status) bool { return len(recordsOf(s, "mig")) == 0 })
	if !strings.Contains(a.log.String(), "domain migrated away") {
		t.Error("A did not log letting go of the migrated domain")
	}

	// The guest calms: B restores the original A recorded.
	s = b.waitFor(t, 90*time.Second, "B restoring the original", func(s api.Status) bool { return action(s, "mig", "reverted") != nil })
	if at := action(s, "mig", "reverted").At; at.Before(loudSince.Add(loud)) {
		t.Errorf("B released the throttle %v before the guest calmed", loudSince.Add(loud).Sub(at).Round(time.Second))
	}
	if len(recordsOf(s, "mig")) != 0 {
		t.Errorf("B still owns %+v", recordsOf(s, "mig"))
	}
	if got := throttleOn(t, ctx, hostB, "mig"); got != "0" {
		t.Errorf("throttle on B after the release: %s", got)
	}
	if meta, err := hostB.Virsh(ctx, "metadata", "mig", "https://github.com/qtune/qtune/xmlns/ownership"); err == nil && strings.Contains(meta, "<knob") {
		t.Errorf("the domain still carries records after the release: %s", meta)
	}
	if action(a.status(t), "mig", "reverted") != nil {
		t.Error("A touched the domain after it left")
	}
}

// otherPolicy has no rule calm-noisy-writers: a host that loads it
// cleanly restores what that rule held.
const otherPolicy = `
rule "calm-noisy-readers" {
  when = disk.read_iops > 100000
  for  = "3s"
  throttle {
    read_iops = 500
  }
}
`

// A migration the destination refuses leaves the throttle and its record
// with host A. The domain then migrates to host B while no agent runs
// there: A lets go at the migrated-out event, and B's agent, started
// later with a policy that no longer has the rule, adopts the record
// the domain carries and restores A's original at once.
func TestMigrationRefusedThenAdoptedLater(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ds := lab.StartLibvirtdsT(t, 2)
	hostA, hostB := ds[0], ds[1]
	dom := hostA.WriterDomainT(t, "mig", 0)
	a := labAgent(t, bin, hostA)
	a.waitFor(t, 40*time.Second, "a throttle on mig at A", func(s api.Status) bool { return action(s, "mig", "applied") != nil })

	if err := hostB.RefuseMigrations(true); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.MigrateTo(ctx, hostB); err == nil {
		t.Fatal("the refused migration went through")
	}
	time.Sleep(3 * e2eInterval)
	if o := recordsOf(a.status(t), "mig"); len(o) != 1 || o[0].State != api.OwnedHeld {
		t.Fatalf("A's records after a failed migration: %+v", o)
	}
	if got := throttleOn(t, ctx, hostA, "mig"); got != "15" {
		t.Fatalf("throttle on A after a failed migration: %s", got)
	}

	if err := hostB.RefuseMigrations(false); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.MigrateTo(ctx, hostB); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 15*time.Second, "A without records of mig", func(s api.Status) bool { return len(recordsOf(s, "mig")) == 0 })
	if got := throttleOn(t, ctx, hostB, "mig"); got != "15" {
		t.Fatalf("throttle on B before its agent runs: %s", got)
	}
	b := startAgentWith(t, bin, otherPolicy, "--log-level", "debug", "--libvirt-socket", hostB.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(hostB.Dir, "run", "libvirt", "qemu"))
	s := b.waitFor(t, 30*time.Second, "B restoring the original of a removed rule", func(s api.Status) bool {
		return action(s, "mig", "reverted") != nil && len(recordsOf(s, "mig")) == 0
	})
	if action(s, "mig", "adopted") == nil {
		t.Errorf("B restored without adopting: %+v", s.Actions)
	}
	if got := throttleOn(t, ctx, hostB, "mig"); got != "0" {
		t.Errorf("throttle on B after the release: %s", got)
	}
}

// A loud domain migrated A→B→A→B with an agent on each host: after each
// move exactly one host owns the throttle, and it is the one the domain
// runs on, with the original taken the first time (unthrottled) and the
// value the rule wants in force; the host it left holds nothing.
func TestMigratedBackAndForth(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ds := lab.StartLibvirtdsT(t, 2)
	dom := ds[0].WriterDomainT(t, "mig", 0)
	agents := []*runningAgent{labAgent(t, bin, ds[0]), labAgent(t, bin, ds[1])}
	agents[0].waitFor(t, 40*time.Second, "a throttle on mig at A", func(s api.Status) bool { return action(s, "mig", "applied") != nil })
	for i := 1; i <= 3; i++ {
		to, from := i%2, (i+1)%2
		took, err := dom.MigrateTo(ctx, ds[to])
		if err != nil {
			t.Fatalf("migration %d: %v", i, err)
		}
		t.Logf("migration %d in %v", i, took.Round(time.Millisecond))
		agents[from].waitFor(t, 15*time.Second, "the source without records", func(s api.Status) bool { return len(recordsOf(s, "mig")) == 0 })
		s := agents[to].waitFor(t, 20*time.Second, "the destination owning the throttle", func(s api.Status) bool { return len(recordsOf(s, "mig")) == 1 })
		o := recordsOf(s, "mig")[0]
		if o.Original.Throttle == nil || o.Original.Throttle.Active() || o.Applied.Throttle == nil || o.Applied.Throttle.IOPSWrite != 15 {
			t.Fatalf("after migration %d the record is %+v", i, o.Owned)
		}
		if got := throttleOn(t, ctx, ds[to], "mig"); got != "15" {
			t.Fatalf("after migration %d the throttle is %s", i, got)
		}
	}
	if out, err := ds[1].Virsh(ctx, "metadata", "mig", "https://github.com/qtune/qtune/xmlns/ownership"); err != nil || strings.Count(out, "<knob") != 1 {
		t.Errorf("the domain carries %v: %s", err, out)
	}
}
