package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// A libvirt domain's LUKS qcow2 disk, its key a libvirt secret, mirrored
// under guest writes: the copy is made and opened encrypted with the
// same secret, and after the pivot its header says LUKS and the guest's
// data reads back through the key. A second disk whose secret libvirt
// keeps private is refused, with nothing written.
func TestRealLibvirtMirrorLUKS(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx := context.Background()
	dir, fast := t.TempDir(), t.TempDir()
	var quiet atomic.Bool
	lj := startLibvirtJobs(t, Options{MirrorDirs: []string{fast}, MaxAttempts: 1, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	d, v, m, l := lj.d, lj.v, lj.m, lj.labJobs

	const open, private = "6c1f3e52-7d0a-4b8e-9a51-0f3a2c9e7d11", "6c1f3e52-7d0a-4b8e-9a51-0f3a2c9e7d22"
	src, other := filepath.Join(dir, "lvluks.qcow2"), filepath.Join(dir, "lvpriv.qcow2")
	luksImage(t, src)
	luksImage(t, other)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.DefineSecret(sctx, open, src, []byte(labKey), false); err != nil {
		t.Fatal(err)
	}
	if err := d.DefineSecret(sctx, private, other, []byte(labKey), true); err != nil {
		t.Fatal(err)
	}
	// The guest writes, then reads back every 10 s while the target's
	// key slot is made and opened (seconds of PBKDF2 each, more on a
	// loaded host) and the copy pivots.
	dom := d.DefineDomainT(t, lab.DomainSpec{Name: "lvluks", Disks: []lab.DomainDisk{{Target: "vda", Image: src, Secret: open}, {Target: "vdb", Image: other, Secret: private}},
		Workload: lab.Stamper(luksPhases...)})
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer wcancel()
	if err := dom.WaitSerial(wctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}

	p, err := m.Plan(ctx, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "lvluks", Disk: "vdb"}, TargetDir: fast}, "hand", false)
	if err == nil || p.Result != state.ResultRefused || !strings.Contains(err.Error(), "in the clear") || !strings.Contains(err.Error(), "private") {
		t.Fatalf("mirror of a disk whose secret is private: %s %q %v", p.Result, p.Reason, err)
	}
	if ents, _ := os.ReadDir(fast); len(ents) != 0 {
		t.Fatalf("a refused copy wrote %v", ents)
	}

	j := l.pivotedCopy(t, wctx, dom, &quiet, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "lvluks", Disk: "vda"}, TargetDir: fast}, 2*time.Minute)
	serial := func() string { s, _ := os.ReadFile(dom.Serial); return string(s) }
	atPivot := strings.Count(serial(), "qtune-verify")
	// libvirt runs the disk on the copy through the same secret, and the
	// next cold boot opens it so too.
	for _, inactive := range []bool{false, true} {
		doc, err := v.DomainXML(ctx, "lvluks", inactive)
		if err != nil {
			t.Fatal(err)
		}
		disks, err := virt.ParseDomainDisks(doc)
		if err != nil || len(disks) != 2 || disks[0].Source != j.Dest || disks[0].Encryption == nil || disks[0].Encryption.SecretUUID != open {
			t.Fatalf("after the pivot vda (inactive %v) is %+v %v", inactive, disks, err)
		}
	}
	verifiedAfter(t, serial, atPivot, time.Minute) // read back through the copy
	d.Virsh(ctx, "destroy", "lvluks")
	checkEncryptedCopy(t, j)
}
