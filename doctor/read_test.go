package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/sample"
)

// scripted answers each Sample with its next pass, and Details as of it.
type scripted struct {
	passes  [][]sample.Disk
	errs    []map[string]error
	details []map[string]facts.Details
	n       int
}

func (s *scripted) Sample(context.Context) ([]sample.Disk, map[string]error, []string) {
	s.n++
	return s.passes[s.n-1], s.errs[s.n-1], nil
}

func (s *scripted) Details(vm string) (facts.Details, bool) {
	d, ok := s.details[s.n-1][vm]
	return d, ok
}

// The live checks take a disk from two samples of facts: rates between
// them, the failed-operation counters of both, the L2 cache exactly as
// the sample has it (the agent's figure, not one of doctor's own), and
// run state, cache, aio and discard from the VM's details. A VM that
// cannot be read is an error naming it; one first read at the second
// sample has no rates.
func TestLiveReadsThroughFacts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	disk := func(vm string, at time.Time, writes uint64) sample.Disk {
		return sample.Disk{VM: vm, Name: "vda", Format: "qcow2", Time: at, L2CacheSize: 3 << 20, VirtualSize: 1 << 30,
			ClusterSize: 64 << 10, IOStatus: "ok", CacheDirect: vm == "a", Counters: sample.Counters{WriteOps: writes}}
	}
	det := func(failed uint64) facts.Details {
		return facts.Details{RunState: "running", Disks: map[string]facts.DiskDetails{"vda": {
			Cache: sample.Cache{Writeback: true, Direct: true}, AIO: "threads", Discard: "ignore", DetectZeroes: "off",
			Failed: failed, ErrorsKnown: true}}}
	}
	src := &scripted{
		passes: [][]sample.Disk{{disk("a", t0, 100)}, {disk("a", t0.Add(2*time.Second), 300), disk("late", t0.Add(2*time.Second), 50)}},
		errs:   []map[string]error{{"late": errors.New("XML read still under way")}, {"bad": errors.New("connection refused")}},
		details: []map[string]facts.Details{{"a": det(1)},
			{"a": det(4), "late": {RunState: "paused", Disks: map[string]facts.DiskDetails{"vda": {Cache: sample.Cache{Writeback: true}}}}}},
	}
	disks, errs := Live(context.Background(), src, time.Millisecond)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "bad: ") {
		t.Fatalf("errors %v, want bad's alone", errs)
	}
	if len(disks) != 2 || disks[0].VM != "a" || disks[1].VM != "late" {
		t.Fatalf("disks %+v", disks)
	}
	a, late := disks[0], disks[1]
	if a.L2Cache != 3<<20 || a.Rates.WriteIOPS != 100 || a.RunState != "running" || a.CacheMode() != "none" || a.AIO != "threads" || a.IOStatus != "ok" {
		t.Errorf("a: %+v", a)
	}
	if a.Errors == nil || a.Errors.Failed != [2]uint64{1, 4} {
		t.Errorf("a's failed operations over the two samples: %+v", a.Errors)
	}
	if late.Rates.Interval != 0 || late.RunState != "paused" || late.Errors != nil || late.CacheMode() != "writeback" {
		t.Errorf("late: %+v", late)
	}
}
