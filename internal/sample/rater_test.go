package sample

import (
	"testing"
	"time"
)

func rdisk(vm, name string, at time.Time, rdOps uint64) Disk {
	return Disk{VM: vm, Name: name, Time: at, Counters: Counters{ReadOps: rdOps}}
}

func TestRaterDerivesFromTheDisksOwnPreviousSample(t *testing.T) {
	r := NewRater()
	t0 := time.Unix(1000, 0)
	if _, ok := r.Next(rdisk("a", "vda", t0, 100)); ok {
		t.Fatal("first sample of a disk gave rates")
	}
	r.Next(rdisk("b", "vda", t0, 5000)) // another VM's disk of the same name
	rt, ok := r.Next(rdisk("a", "vda", t0.Add(2*time.Second), 300))
	if !ok || rt.ReadIOPS != 100 {
		t.Fatalf("a/vda: ok=%v read IOPS %v, want 100", ok, rt.ReadIOPS)
	}
	// A counter that went back (QEMU restarted) gives no rate, and the
	// next sample derives from the new count.
	if _, ok := r.Next(rdisk("a", "vda", t0.Add(3*time.Second), 10)); ok {
		t.Fatal("counter reset gave rates")
	}
	rt, ok = r.Next(rdisk("a", "vda", t0.Add(4*time.Second), 30))
	if !ok || rt.ReadIOPS != 20 {
		t.Fatalf("after reset: ok=%v read IOPS %v, want 20", ok, rt.ReadIOPS)
	}
	// The same time twice: no interval, no rates.
	if _, ok := r.Next(rdisk("a", "vda", t0.Add(4*time.Second), 40)); ok {
		t.Fatal("zero interval gave rates")
	}
}

func TestRaterForgetsVMsAndSweepsUnseenDisks(t *testing.T) {
	r := NewRater()
	t0 := time.Unix(1000, 0)
	for _, d := range []Disk{rdisk("a", "vda", t0, 1), rdisk("a", "vdb", t0, 1), rdisk("ab", "vda", t0, 1)} {
		r.Next(d)
	}
	r.Sweep()
	r.ForgetVM("a")
	if r.Len() != 1 {
		t.Fatalf("after ForgetVM(a): %d disks held, want 1 (ab/vda)", r.Len())
	}
	if _, ok := r.Next(rdisk("a", "vda", t0.Add(time.Second), 2)); ok {
		t.Fatal("a forgotten VM's disk gave rates")
	}
	for i := 0; i < SweepAfter-1; i++ {
		r.Sweep()
		r.Next(rdisk("a", "vda", t0.Add(time.Second), 2))
		if i < SweepAfter-2 && r.Len() != 2 {
			t.Fatalf("sweep %d: %d disks held, want 2 (ab/vda unseen for only %d cycles)", i+1, r.Len(), i+1)
		}
	}
	if r.Len() != 1 {
		t.Fatalf("after %d sweeps: %d disks held, want 1", SweepAfter, r.Len())
	}
	if _, ok := r.Next(rdisk("ab", "vda", t0.Add(2*time.Second), 5)); ok {
		t.Fatal("a swept disk gave rates from its old sample")
	}
	rt, ok := r.Next(rdisk("a", "vda", t0.Add(2*time.Second), 4))
	if !ok || rt.ReadIOPS != 2 {
		t.Fatalf("a/vda kept across Sweep: ok=%v IOPS %v, want 2", ok, rt.ReadIOPS)
	}
}

// KeepFor keeps a disk unseen for longer than SweepAfter Sweeps, for a
// sampler that reads quiet disks seldom.
func TestRaterKeepFor(t *testing.T) {
	r := NewRater()
	r.KeepFor(3 * SweepAfter)
	d := Disk{VM: "a", Name: "vda"}
	r.Next(d)
	for i := 0; i < 3*SweepAfter-2; i++ {
		r.Sweep()
	}
	if r.Len() != 1 {
		t.Fatalf("disk dropped before %d Sweeps", 3*SweepAfter)
	}
	r.Sweep()
	r.Sweep()
	if r.Len() != 0 {
		t.Fatal("disk kept past KeepFor")
	}
}
