package agent

import (
	"context"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
)

// timedSource samples two disks of one VM with growing write counters:
// vda with libvirt's timed statistics, vdb without.
type timedSource struct {
	fakeSource
	now func() time.Time
	n   uint64
}

func (s *timedSource) Sample(context.Context) ([]sample.Disk, map[string]error, []string) {
	s.n++
	c := sample.Counters{WriteOps: 100 * s.n, WriteTimeNs: 100 * s.n * 2e6}
	return []sample.Disk{
		{VM: "a", Name: "vda", Time: s.now(), Counters: c, Timed: &sample.Timed{IntervalSec: 1, WriteMaxNs: 42e6, WriteAvgNs: 2e6}},
		{VM: "a", Name: "vdb", Time: s.now(), Counters: c},
	}, nil, nil
}

// Status names each disk's latency source and, with timed statistics,
// the longest write of the interval; a disk without them reads as
// before.
func TestStatusLatencySource(t *testing.T) {
	r := newReconRig(t, nil)
	src := &timedSource{fakeSource: fakeSource{b: r.b}, now: r.clk.Now}
	r.a.src = src
	r.b.vms["a"] = true
	for i := 0; i < 2; i++ {
		r.clk.Advance(time.Second)
		r.a.cycle(context.Background())
	}
	got := map[string]api.DiskStatus{}
	for _, v := range r.a.Snapshot().VMs {
		for _, d := range v.Disks {
			got[d.Name] = d
		}
	}
	vda, vdb := got["vda"], got["vdb"]
	if vda.LatencySource != sample.LatencyTimed || vda.WriteMax == nil || *vda.WriteMax != 42 || vda.ReadMax != nil {
		t.Errorf("vda: source %q, max write %v, max read %v", vda.LatencySource, vda.WriteMax, vda.ReadMax)
	}
	if vdb.LatencySource != sample.LatencyCounters || vdb.WriteMax != nil || vdb.WriteLatency == nil || *vdb.WriteLatency != 2 {
		t.Errorf("vdb: %+v", vdb)
	}
}
