package main

import (
	"context"
	"fmt"
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

func labAgent(t *testing.T, bin string, d *lab.Libvirtd, args ...string) *runningAgent {
	return startAgentWith(t, bin, migrationPolicy, append([]string{"--log-level", "debug", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu")}, args...)...)
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
	meta, err := hostA.Virsh(ctx, "metadata", "mig", ownershipNS)
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
	if meta, err := hostB.Virsh(ctx, "metadata", "mig", ownershipNS); err == nil && strings.Contains(meta, "<knob") {
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

// persistedRules set an L2 cache size and a cache mode on every disk,
// persisted into the domain's definition too. libvirt cannot change
// either live: the agents that run them are allowed QMP passthrough.
const persistedRules = `
rule "l2-fixed" {
  when    = disk.virtual_size > 0
  for     = "1s"
  persist = true
  l2_cache { size = "2MiB" }
}
rule "writeback" {
  when    = disk.virtual_size > 0
  for     = "1s"
  persist = true
  cache { direct = false }
}
`

// heldAll reports whether vm's records are the n given, all held.
// keptAll checks that the agent still has vm's n records some cycles
// after a migration that did not happen: none dropped, and all held
// again within a few cycles (a cycle whose call to a busy libvirtd timed
// out shows them orphaned until the next one reads the domain).
func keptAll(t *testing.T, a *runningAgent, vm string, n int, when string) {
	t.Helper()
	if o := recordsOf(a.status(t), vm); len(o) != n {
		t.Fatalf("%s: %d records of %s, want %d: %s", when, len(o), vm, n, ownedStates(o))
	}
	a.waitFor(t, 10*time.Second, when+": every record of "+vm+" held", func(s api.Status) bool { return heldAll(s, vm, n) })
}

// ownedStates lists records as knob=state (reason).
func ownedStates(o []api.OwnedStatus) string {
	var b strings.Builder
	for _, r := range o {
		fmt.Fprintf(&b, "%s/%s %s=%s (%s); ", r.VM, r.Disk, r.Knob, r.State, r.Reason)
	}
	return b.String()
}

func heldAll(s api.Status, vm string, n int) bool {
	o := recordsOf(s, vm)
	for _, r := range o {
		if r.State != api.OwnedHeld {
			return false
		}
	}
	return len(o) == n
}

// A migration the destination refuses leaves the throttle, the persisted
// L2 cache size and cache mode and their records with host A. The
// domain then migrates to host B while no agent runs there: A lets go at
// the migrated-out event, and B's agent, started later with a policy
// that no longer has the rules, adopts the records the domain carries
// and restores A's originals at once, live and in the definition.
func TestMigrationRefusedThenAdoptedLater(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ds := lab.StartLibvirtdsT(t, 2)
	hostA, hostB := ds[0], ds[1]
	dom := hostA.WriterDomainT(t, "mig", 0)
	defined := func(d *lab.Libvirtd) string {
		out, err := d.Virsh(ctx, "dumpxml", "--inactive", "mig")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := defined(hostA)
	fast := t.TempDir()
	a := startAgentWith(t, bin, migrationPolicy+persistedRules, "--log-level", "debug", "--libvirt-socket", hostA.SocketPath(),
		"--libvirt-pid-dir", libvirtPidDir(hostA), "--allow-mirror-dir", fast, "--allow-passthrough")
	a.waitFor(t, 40*time.Second, "a throttle, an L2 cache and a cache mode on mig at A", func(s api.Status) bool { return heldAll(s, "mig", 3) })
	if got := throttleOn(t, ctx, hostA, "mig"); got != "15" {
		t.Fatalf("throttle on A: %s", got)
	}
	for _, want := range []string{"cache='writeback'", "<max_size unit='bytes'>2097152</max_size>"} {
		if def := defined(hostA); !strings.Contains(def, want) {
			t.Fatalf("A's definition lacks %s:\n%s", want, def)
		}
	}

	copyBlocksMigration(t, ctx, bin, a, dom, hostB, fast)
	if err := hostB.RefuseMigrations(true); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.MigrateTo(ctx, hostB); err == nil {
		t.Fatal("the refused migration went through")
	}
	time.Sleep(3 * e2eInterval)
	keptAll(t, a, "mig", 3, "after a failed migration")
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
	// The definition came along (--persistent), with the persisted
	// records in its metadata.
	if def := defined(hostB); !strings.Contains(def, "cache='writeback'") || strings.Count(def, "persisted=\"yes\"") != 2 {
		t.Fatalf("B's definition before its agent runs:\n%s", def)
	}
	b := startAgentWith(t, bin, otherPolicy, "--log-level", "debug", "--libvirt-socket", hostB.SocketPath(),
		"--libvirt-pid-dir", libvirtPidDir(hostB), "--allow-passthrough")
	s := b.waitFor(t, 30*time.Second, "B restoring the originals of the removed rules", func(s api.Status) bool {
		return len(recordsOf(s, "mig")) == 0 && actionOn(s, "mig", "throttle", "reverted") != nil &&
			actionOn(s, "mig", "l2_cache", "reverted") != nil && actionOn(s, "mig", "cache", "reverted") != nil
	})
	for _, k := range []string{"throttle", "l2_cache", "cache"} {
		if actionOn(s, "mig", k, "adopted") == nil {
			t.Errorf("B restored %s without adopting it: %+v", k, s.Actions)
		}
	}
	if got := throttleOn(t, ctx, hostB, "mig"); got != "0" {
		t.Errorf("throttle on B after the release: %s", got)
	}
	// The definition is as it was before A changed it: the cache mode
	// and the L2 cache (no <metadata_cache>) A's originals, no records.
	if def := defined(hostB); !strings.Contains(def, "cache='none'") || strings.Contains(def, "metadata_cache") || strings.Contains(def, "<qtune:ownership") {
		t.Errorf("B's definition after the restores:\n%s\nA's before the changes:\n%s", def, before)
	}
}

// actionOn is the latest action of result on vm's knob.
func actionOn(s api.Status, vm, knob, result string) *api.ActionStatus {
	for i := len(s.Actions) - 1; i >= 0; i-- {
		if a := &s.Actions[i]; a.VM == vm && a.Knob == knob && a.Result == result {
			return a
		}
	}
	return nil
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
	meta, err := ds[1].Virsh(ctx, "metadata", "mig", ownershipNS)
	if err != nil || strings.Count(meta, "<knob") != 1 {
		t.Fatalf("the domain carries %v: %s", err, meta)
	}
	checkRecordsAgree(t, ctx, bin, ds, agents, meta)
}

const ownershipNS = "https://github.com/qtune/qtune/xmlns/ownership"

// checkRecordsAgree runs qtune state check against each host's store and
// libvirtd with the agents stopped (the store is theirs while they run):
// B's store and the domain's records agree, A holds nothing of the
// domain (a record of a domain not running there would be named). Then,
// with B's agent running again, the record in the domain is changed by
// hand: the agent marks the knob in its status at its next cycle (it
// hears the metadata change; its regular comparison is 30 s apart), and
// state check, B's agent stopped, names the disagreement and fails.
func checkRecordsAgree(t *testing.T, ctx context.Context, bin string, ds []*lab.Libvirtd, agents []*runningAgent, meta string) {
	t.Helper()
	began := time.Now()
	defer func() {
		t.Logf("state check and the mark of a record changed by hand: %v", time.Since(began).Round(time.Millisecond))
	}()
	check := func(i int) (string, error) {
		return qtuneCmd(t, bin, "state", "check", "--state-dir", agents[i].state, "--libvirt-socket", ds[i].SocketPath())
	}
	for _, a := range agents {
		a.stop(t)
	}
	for i := range agents {
		out, err := check(i)
		if err != nil || !strings.Contains(out, "domain records: agree with the store") {
			t.Errorf("state check of host %d: %v\n%s", i, err, out)
		}
	}
	b := agents[1].start(t, bin, "--log-level", "debug", "--libvirt-socket", ds[1].SocketPath(), "--libvirt-pid-dir", libvirtPidDir(ds[1]))
	b.waitFor(t, 10*time.Second, "the record compared", func(s api.Status) bool {
		o := recordsOf(s, "mig")
		return len(o) == 1 && o[0].State == api.OwnedHeld && o[0].RecordMismatch == ""
	})
	// virsh prints the element with libvirt's prefix declared on it;
	// libvirt declares it itself on a write, and refuses it twice.
	edited := strings.Replace(meta, ` xmlns:qtune="`+ownershipNS+`"`, "", 1)
	edited = strings.Replace(edited, `rule="calm-noisy-writers"`, `rule="edited-by-hand"`, 1)
	if edited == meta {
		t.Fatalf("no rule in the record: %s", meta)
	}
	if out, err := ds[1].Virsh(ctx, "metadata", "mig", ownershipNS, "--key", "qtune", "--set", edited, "--live"); err != nil {
		t.Fatalf("virsh metadata --set: %v %s", err, out)
	}
	edit := time.Now()
	s := b.waitFor(t, 10*time.Second, "the knob marked", func(s api.Status) bool {
		o := recordsOf(s, "mig")
		return len(o) == 1 && o[0].RecordMismatch != ""
	})
	t.Logf("marked %v after the edit", time.Since(edit).Round(time.Millisecond))
	if why := recordsOf(s, "mig")[0].RecordMismatch; !strings.Contains(why, "edited-by-hand") {
		t.Errorf("the mark says %q", why)
	}
	if out, _ := qtuneCmd(t, bin, "status", "--addr", b.addr); !strings.Contains(out, "RECORDS DISAGREE: mig/vda throttle: rule calm-noisy-writers in the store, edited-by-hand in the domain") {
		t.Errorf("qtune status:\n%s", out)
	}
	b.stop(t)
	out, err := check(1)
	if err == nil || !strings.Contains(out, "domain records: 1 disagreement(s)") ||
		!strings.Contains(out, "mig/vda throttle: rule calm-noisy-writers in the store, edited-by-hand in the domain") {
		t.Errorf("state check after the record was changed by hand: %v\n%s", err, out)
	}
}

// copyBlocksMigration starts a slow qtune mirror of the domain's disk on
// host A: the domain's metadata carries the copy's record, qtune status
// names it as what keeps the domain from migrating, and libvirt refuses
// the migration while the copy and A's throttle go on. Cancelled, the
// copy leaves the metadata.
func copyBlocksMigration(t *testing.T, ctx context.Context, bin string, a *runningAgent, dom *lab.Domain, to *lab.Libvirtd, dir string) {
	t.Helper()
	began := time.Now()
	defer func() { t.Logf("the copy that blocks a migration: %v", time.Since(began).Round(time.Millisecond)) }()
	sock := filepath.Join(a.state, "control.sock")
	out, err := qtuneCmd(t, bin, "jobs", "start", "mirror", "mig", "vda", "--target-dir", dir, "--speed", "1MiB", "--socket", sock)
	if err != nil || !strings.HasPrefix(out, "planned ") {
		t.Fatalf("jobs start: %v\n%s", err, out)
	}
	id := strings.Fields(out)[1]
	s := a.waitFor(t, 30*time.Second, "the copy running and named as what blocks migration", func(s api.Status) bool {
		j := jobOf(s, id)
		v := vmOf(s, "mig")
		return j != nil && j.State == api.JobRunning && v != nil && strings.Contains(v.MigrationBlocked, id)
	})
	if out, _ := qtuneCmd(t, bin, "status", "--addr", a.addr); !strings.Contains(out, "NOT MIGRATABLE: libvirt refuses to migrate the domain while a block job runs: mirror "+id+" of vda") {
		t.Errorf("qtune status while the copy runs:\n%s", out)
	}
	carried := func() string {
		meta, err := dom.Daemon().Virsh(ctx, "metadata", "mig", ownershipNS)
		if err != nil {
			t.Fatal(err)
		}
		return meta
	}
	// The copy's record is written by the cycle after the copy started.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(carried(), `<job id="`+id+`" kind="mirror" disk="vda"`) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if meta := carried(); !strings.Contains(meta, `<job id="`+id+`" kind="mirror" disk="vda"`) || !strings.Contains(meta, `rule="calm-noisy-writers"`) {
		t.Errorf("the domain's records while the copy runs: %s", meta)
	}

	if _, err := dom.MigrateTo(ctx, to); err == nil {
		t.Fatal("a domain with a qtune copy running was migrated")
	} else if !strings.Contains(err.Error(), "block job") {
		t.Errorf("the refusal does not name the block job: %v", err)
	}
	time.Sleep(2 * e2eInterval)
	s = a.status(t)
	if j := jobOf(s, id); j == nil || j.State != api.JobRunning {
		t.Errorf("the copy after the refused migration: %+v", j)
	}
	keptAll(t, a, "mig", 3, "after the refused migration")

	if out, err := qtuneCmd(t, bin, "jobs", "cancel", "--socket", sock, id); err != nil {
		t.Fatalf("jobs cancel: %v\n%s", err, out)
	}
	a.waitFor(t, 30*time.Second, "the copy cancelled, the domain migratable", func(s api.Status) bool {
		j := jobOf(s, id)
		v := vmOf(s, "mig")
		return j != nil && j.State == api.JobCancelled && v != nil && v.MigrationBlocked == ""
	})
	deadline = time.Now().Add(10 * time.Second)
	for strings.Contains(carried(), "<job") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if meta := carried(); strings.Contains(meta, "<job") || !strings.Contains(meta, "<knob") {
		t.Errorf("the domain's records after the copy was cancelled: %s", meta)
	}
}

func vmOf(s api.Status, name string) *api.VMStatus {
	for i := range s.VMs {
		if s.VMs[i].Name == name {
			return &s.VMs[i]
		}
	}
	return nil
}
