package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// Two daemons on this machine, a writing guest live-migrated from one to
// the other and refused on the way back; then both stopped, namespaces
// and all.
func TestTwoLibvirtdsMigrate(t *testing.T) {
	NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now()
	ds := StartLibvirtdsT(t, 2)
	t.Logf("two daemons answering after %v", time.Since(began).Round(time.Millisecond))
	a, b := ds[0], ds[1]
	if a.HostUUID == b.HostUUID || a.MigrationPorts == b.MigrationPorts {
		t.Fatalf("daemons share a host UUID or ports: %+v %+v", a, b)
	}
	for _, d := range ds {
		caps, err := d.Virsh(ctx, "capabilities")
		if err != nil || !strings.Contains(caps, "<uuid>"+d.HostUUID+"</uuid>") {
			t.Errorf("daemon %s does not report its host UUID %s: %.300s %v", d.Dir, d.HostUUID, caps, err)
		}
	}
	dom := a.WriterDomainT(t, "mig", 0)

	took, err := dom.MigrateTo(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live migration A to B: %v", took.Round(time.Millisecond))
	if out, err := b.Virsh(ctx, "domstate", "mig"); err != nil || strings.TrimSpace(out) != "running" {
		t.Fatalf("on B the domain is %q (%v)", out, err)
	}
	if out, err := a.Virsh(ctx, "list", "--all", "--name"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("A still lists %q (%v)", out, err)
	}
	// The guest goes on writing its console into the same file.
	before, _ := os.Stat(dom.Serial)
	if err := dom.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	if before == nil || before.Size() == 0 {
		t.Fatalf("serial log %s lost across the migration", dom.Serial)
	}

	if err := a.RefuseMigrations(true); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.MigrateTo(ctx, a); err == nil || !strings.Contains(err.Error(), "refuses") {
		t.Fatalf("a refused migration: %v", err)
	}
	if out, err := b.Virsh(ctx, "domstate", "mig"); err != nil || strings.TrimSpace(out) != "running" {
		t.Fatalf("after the refused migration the domain on B is %q (%v)", out, err)
	}
	if dom.Daemon() != b {
		t.Fatal("a refused migration moved the domain")
	}

	for _, d := range ds {
		ns := d.mntNS
		if err := d.Stop(); err != nil {
			t.Errorf("stop %s: %v", d.Dir, err)
		}
		if ns == "" {
			t.Errorf("daemon %s had no namespace recorded", d.Dir)
		}
		if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", d.Dir, err)
		}
	}
}
