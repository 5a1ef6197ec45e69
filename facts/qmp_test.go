package facts

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A VM's very first sample is taken, not reported as "hung or slow":
// its runner's goroutine may not be listening yet when the cycle asks.
func TestFirstSampleOfANewVMIsNotBusy(t *testing.T) {
	for i := 0; i < 20; i++ {
		vm := fakeVM(t)
		dir := t.TempDir()
		if err := os.Symlink(vm.Path, filepath.Join(dir, "fresh.sock")); err != nil {
			t.Fatal(err)
		}
		s := newQMPSource(Options{QMPDir: dir, CallTimeout: 2 * time.Second}, hclog.NewNullLogger())
		disks, errs, _ := s.sample(context.Background())
		s.stopAll()
		if err := errs["fresh"]; err != nil {
			t.Fatalf("attempt %d: first sample: %v", i, err)
		}
		if len(disks) != 2 {
			t.Fatalf("attempt %d: %d disks, want 2", i, len(disks))
		}
	}
}

// With Details, a plain QEMU VM's sample also keeps its run state and
// each disk's guest cache and error counters, from the same replies.
func TestQMPDetails(t *testing.T) {
	vm := fakeVM(t)
	vm.Reply("query-status", map[string]any{"running": true, "status": "running"})
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "d.sock")); err != nil {
		t.Fatal(err)
	}
	s := newQMPSource(Options{QMPDir: dir, CallTimeout: 2 * time.Second, Details: true}, hclog.NewNullLogger())
	defer s.stopAll()
	disks, errs, _ := s.sample(context.Background())
	if len(errs) != 0 || len(disks) != 2 {
		t.Fatalf("disks %d, errs %v", len(disks), errs)
	}
	d, ok := s.details("d")
	if !ok || d.RunState != "running" || len(d.Disks) != 2 {
		t.Fatalf("details %+v (ok %v)", d, ok)
	}
	for name, dd := range d.Disks {
		if !dd.ErrorsKnown || !dd.Cache.Writeback {
			t.Errorf("%s: %+v", name, dd)
		}
	}
}
