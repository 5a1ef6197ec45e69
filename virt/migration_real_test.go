package virt_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/virt"
)

// A throttled, writing domain with qtune's metadata, live-migrated
// between two libvirtds: throttle and metadata arrive, the source lets
// go and says so in an event, the destination says it took the domain
// in; back and forth three times; what was written persistently
// survives a restart of the domain on the destination.
func TestRealMigrationCarriesOwnership(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	a, b := twoHosts(t, ctx)
	dom := a.d.WriterDomainT(t, "mig", 0)
	const name = "mig"
	throttle := sample.Throttle{IOPSWrite: 120}
	if err := a.v.SetBlockIOTune(ctx, name, "vda", throttle, false); err != nil {
		t.Fatal(err)
	}
	// The persistent definition gets the persisted records (a throttle,
	// an L2 cache size and a cache mode), the live domain those and one
	// more.
	persisted := virt.Ownership{Knobs: []virt.OwnedKnob{ownedThrottle(1, "A", "calm-loud", true), ownedL2(3, "A"), ownedCacheMode(4, "A")}}
	live := virt.Ownership{Knobs: []virt.OwnedKnob{ownedThrottle(1, "A", "calm-loud", true), ownedThrottle(2, "A", "night", false),
		ownedL2(3, "A"), ownedCacheMode(4, "A")},
		Jobs: []virt.CopyJob{{ID: "j1", Kind: "mirror", Disk: "vda", Source: "/a", Target: "/b", Host: "A", Since: time.Date(2026, 12, 7, 20, 1, 0, 0, time.UTC)}}}
	if err := a.v.SetOwnership(ctx, name, persisted, true); err != nil {
		t.Fatal(err)
	}
	if err := a.v.SetOwnership(ctx, name, live, false); err != nil {
		t.Fatal(err)
	}
	checkHolds(t, ctx, a, name, throttle, live)
	// Metadata goes through libvirt's own API: no custom-monitor taint.
	if log, err := os.ReadFile(filepath.Join(a.d.Dir, "log", "qemu", name+".log")); err != nil {
		t.Errorf("QEMU's log: %v", err)
	} else if strings.Contains(string(log), "custom-monitor") {
		t.Errorf("writing metadata tainted the domain:\n%s", log)
	}

	hosts := map[*lab.Libvirtd]*labHost{a.d: a, b.d: b}
	var took []time.Duration
	for hop := 1; hop <= 7; hop++ { // A→B, then back and forth three times
		from := hosts[dom.Daemon()]
		to := a
		if from == a {
			to = b
		}
		outBefore, inBefore, resumedBefore := from.ev.count(name, virt.MigrationOut), to.ev.count(name, virt.MigrationIn), to.ev.count(name, virt.MigrationResumed)
		stop := make(chan struct{})
		seen := watchJob(ctx, from, name, stop)
		d, err := dom.MigrateTo(ctx, to.d)
		close(stop)
		if err != nil {
			t.Fatalf("hop %d %s→%s: %v", hop, from.name, to.name, err)
		}
		took = append(took, d)
		job, migrating := <-seen
		t.Logf("hop %d %s→%s: %v; source's job seen: %v %+v", hop, from.name, to.name, d.Round(time.Millisecond), migrating, job)
		if !migrating || job.Operation != "migration-out" {
			t.Errorf("hop %d: the source's job never showed a migration out (%+v)", hop, job)
		}
		checkHolds(t, ctx, to, name, throttle, live)
		if j, err := to.v.Job(ctx, name); err != nil || j.Migrating() {
			t.Errorf("hop %d: arrived on %s, its job is %+v (%v)", hop, to.name, j, err)
		}
		checkGone(t, ctx, from, name)
		if !from.ev.wait(name, virt.MigrationOut, 10*time.Second) || from.ev.count(name, virt.MigrationOut) != outBefore+1 {
			t.Errorf("hop %d: source %s saw %v", hop, from.name, from.ev.phases(name))
		}
		to.ev.wait(name, virt.MigrationResumed, 10*time.Second)
		if to.ev.count(name, virt.MigrationIn) != inBefore+1 || to.ev.count(name, virt.MigrationResumed) != resumedBefore+1 {
			t.Errorf("hop %d: destination %s saw %v", hop, to.name, to.ev.phases(name))
		}
		if hop == 1 {
			// The guest goes on writing on B, held by the throttle
			// that came along.
			rate := libvirtWriteRate(t, b.v, name, 3*time.Second)
			t.Logf("on B after the migration: %.0f write IOPS under a %d IOPS throttle", rate, throttle.IOPSWrite)
			if rate < float64(throttle.IOPSWrite)*0.8 || rate > float64(throttle.IOPSWrite)*1.2 {
				t.Errorf("on B the guest writes %.0f IOPS, want %d ±20%%", rate, throttle.IOPSWrite)
			}
		}
	}
	t.Logf("migration times: %v", took)
	t.Logf("phases seen on A: %v; on B: %v", a.ev.phases(name), b.ev.phases(name))

	// On B now. Its persistent definition carries what was written
	// persistently; a destroy and start brings exactly that back.
	if dom.Daemon() != b.d {
		t.Fatalf("the domain ended on %s", dom.Daemon().Dir)
	}
	if got, err := b.v.Ownership(ctx, name, true); err != nil || !equalOwnership(got, persisted) {
		t.Errorf("B's persistent metadata %+v (%v), want %+v", got, err, persisted)
	}
	for _, cmd := range [][]string{{"destroy", name}, {"start", name}} {
		if _, err := b.d.Virsh(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.v.Ownership(ctx, name, false); err != nil || !equalOwnership(got, persisted) {
		t.Errorf("after destroy and start on B: metadata %+v (%v), want %+v", got, err, persisted)
	}
}

func equalOwnership(a, b virt.Ownership) bool {
	x, err1 := a.Encode()
	y, err2 := b.Encode()
	return err1 == nil && err2 == nil && x == y
}

// Migrations that fail leave everything where it was: one the
// destination refuses, and one cancelled while its RAM copy runs.
func TestRealMigrationFails(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b := twoHosts(t, ctx)
	dom := a.d.WriterDomainT(t, "stay", 0)
	const name = "stay"
	throttle := sample.Throttle{IOPSWrite: 150}
	if err := a.v.SetBlockIOTune(ctx, name, "vda", throttle, false); err != nil {
		t.Fatal(err)
	}
	// A domain qtune never wrote on has no metadata, which reads as
	// empty; writing an empty Ownership removes it again.
	if o, err := a.v.Ownership(ctx, name, false); err != nil || !o.Empty() {
		t.Fatalf("fresh domain: %+v, %v", o, err)
	}
	owned := virt.Ownership{Knobs: []virt.OwnedKnob{ownedThrottle(1, "A", "calm-loud", false)}}
	for _, o := range []virt.Ownership{owned, {}} {
		if err := a.v.SetOwnership(ctx, name, o, false); err != nil {
			t.Fatal(err)
		}
	}
	if doc, err := a.v.Metadata(ctx, name, false); err != nil || doc != "" {
		t.Fatalf("after removing: %q, %v", doc, err)
	}
	if err := a.v.SetOwnership(ctx, name, owned, false); err != nil {
		t.Fatal(err)
	}
	stays := func(what string) {
		t.Helper()
		if dom.Daemon() != a.d {
			t.Fatalf("%s: the domain moved", what)
		}
		if st, err := a.v.DomainStats(ctx, name); err != nil || st[name].State != "running" {
			t.Errorf("%s: on A the domain is %+v (%v)", what, st[name], err)
		}
		checkHolds(t, ctx, a, name, throttle, owned)
		checkGone(t, ctx, b, name)
		if n := a.ev.count(name, virt.MigrationOut); n != 0 {
			t.Errorf("%s: A saw %d migrated-out events", what, n)
		}
	}

	t.Run("refused", func(t *testing.T) {
		if err := b.d.RefuseMigrations(true); err != nil {
			t.Fatal(err)
		}
		defer b.d.RefuseMigrations(false)
		if _, err := dom.MigrateTo(ctx, b.d); err == nil {
			t.Fatal("B refuses migrations, and the migration succeeded")
		} else {
			t.Logf("refused: %v", err)
		}
		stays("refused")
	})

	t.Run("cancelled", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := lab.MigrateWith(ctx, a.d, b.d, name, lab.MigrateOptions{BandwidthMiB: 1})
			done <- err
		}()
		stop := make(chan struct{})
		defer close(stop)
		var job virt.DomainJob
		select {
		case j, ok := <-watchJob(ctx, a, name, stop):
			if !ok {
				t.Fatal("no migration job seen")
			}
			job = j
		case err := <-done:
			t.Fatalf("a migration at 1 MiB/s ended before it was seen: %v", err)
		}
		t.Logf("A during the migration: %+v", job)
		// The destination knows the incoming domain by then, and says
		// it is migrating too.
		select {
		case in, ok := <-watchJob(ctx, b, name, stop):
			if !ok || in.Operation != "migration-in" {
				t.Errorf("B during the migration: %+v", in)
			}
			t.Logf("B during the migration: %+v", in)
		case <-time.After(30 * time.Second):
			t.Error("B never showed an incoming migration")
		}
		if _, err := a.d.Virsh(ctx, "domjobabort", name); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil {
			t.Fatal("an aborted migration succeeded")
		}
		if j, err := a.v.Job(ctx, name); err != nil || j.Migrating() {
			t.Errorf("after the abort A's job is %+v (%v)", j, err)
		}
		stays("cancelled")
		t.Logf("phases seen on A: %v; on B: %v", a.ev.phases(name), b.ev.phases(name))
	})
}

// A domain with a block copy running cannot be migrated: libvirt refuses
// before anything moves, and the copy goes on, its record still in the
// domain's metadata on the source.
func TestRealMigrationRefusedDuringCopy(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a, b := twoHosts(t, ctx)
	a.d.WriterDomainT(t, "copying", 0)
	const name = "copying"
	target := filepath.Join(t.TempDir(), "copy.qcow2")
	dest := "<disk type='file'><source file='" + target + "'/><driver type='qcow2'/></disk>"
	if err := a.v.BlockCopy(ctx, name, "vda", dest, 256<<10, 0); err != nil {
		t.Fatal(err)
	}
	defer a.v.BlockJobAbort(ctx, name, "vda", false)
	copying := virt.Ownership{Jobs: []virt.CopyJob{{ID: "qtune-mirror-copying-vda-1", Kind: "mirror", Disk: "vda",
		Source: "/a.qcow2", Target: target, Host: "A", Since: time.Date(2026, 12, 7, 20, 1, 0, 0, time.UTC)}}}
	if err := a.v.SetOwnership(ctx, name, copying, false); err != nil {
		t.Fatal(err)
	}
	_, err := lab.Migrate(ctx, a.d, b.d, name)
	if err == nil {
		t.Fatal("a domain with a block copy running was migrated")
	}
	t.Logf("refused: %v", err)
	if !strings.Contains(err.Error(), "block job") && !strings.Contains(err.Error(), "blockjob") {
		t.Errorf("the refusal does not name the block job: %v", err)
	}
	if j, err := a.v.BlockJobInfo(ctx, name, "vda"); err != nil || !j.Found {
		t.Errorf("the copy is gone after the refused migration: %+v %v", j, err)
	}
	if o, err := a.v.Ownership(ctx, name, false); err != nil || !equalOwnership(o, copying) {
		t.Errorf("the domain's records after the refused migration: %+v (%v), want %+v", o, err, copying)
	}
	checkGone(t, ctx, b, name)
	if n := a.ev.count(name, virt.MigrationOut); n != 0 {
		t.Errorf("A saw %d migrated-out events", n)
	}
}
