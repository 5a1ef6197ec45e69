package virt

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/internal/sample"
)

// A bulk stats record as libvirt (11.10 and later) returns it for a disk
// whose driver declares <statistics> with intervals of 10 s and 1 s, and
// another disk that declares none.
func timedRecord() []libvirt.TypedParam {
	return []libvirt.TypedParam{
		param("block.count", uint32(2)),
		param("block.0.name", "vda"), param("block.0.wr.reqs", uint64(500)), param("block.0.wr.times", uint64(9e9)),
		param("block.0.timed_group.count", uint64(2)),
		param("block.0.timed_group.0.interval", uint64(10)),
		param("block.0.timed_group.0.wr_latency_max", uint64(90e6)),
		param("block.0.timed_group.1.interval", uint64(1)),
		param("block.0.timed_group.1.rd_latency_min", uint64(0)),
		param("block.0.timed_group.1.rd_latency_max", uint64(0)),
		param("block.0.timed_group.1.rd_latency_avg", uint64(0)),
		param("block.0.timed_group.1.wr_latency_min", uint64(200e3)),
		param("block.0.timed_group.1.wr_latency_max", uint64(42e6)),
		param("block.0.timed_group.1.wr_latency_avg", uint64(3e6)),
		param("block.0.timed_group.1.flush_latency_max", uint64(7e6)),
		param("block.0.timed_group.1.rd_queue_depth_avg", 0.0),
		param("block.0.timed_group.1.wr_queue_depth_avg", 1.5),
		param("block.1.name", "vdb"), param("block.1.wr.reqs", uint64(3)),
	}
}

func TestDecodeTimedGroups(t *testing.T) {
	disks := DecodeBlockStats("t1", timedRecord(), time.Unix(100, 0))
	if len(disks) != 2 {
		t.Fatalf("%d disks", len(disks))
	}
	got := disks[0].Timed
	want := sample.Timed{IntervalSec: 1, WriteMinNs: 200e3, WriteMaxNs: 42e6, WriteAvgNs: 3e6, FlushMaxNs: 7e6, WriteQueueDepth: 1.5}
	if got == nil || *got != want {
		t.Fatalf("vda timed group (the 1 s one wanted):\n got %+v\nwant %+v", got, want)
	}
	if disks[0].LatencySource() != sample.LatencyTimed || disks[0].WriteOps != 500 {
		t.Errorf("vda: source %s, counters %+v", disks[0].LatencySource(), disks[0].Counters)
	}
	// A disk without <statistics>: as before, counters only.
	if disks[1].Timed != nil || disks[1].LatencySource() != sample.LatencyCounters {
		t.Errorf("vdb has no timed group, got %+v (%s)", disks[1].Timed, disks[1].LatencySource())
	}
	timed, hist := StatsCarry(timedRecord())
	if !timed || hist {
		t.Errorf("StatsCarry: timed=%v histograms=%v", timed, hist)
	}
}

// The names are read loosely: dotted or underscored, flush or fl,
// interval or interval_length, and a group number that is not one is
// not a group.
func TestDecodeTimedSpellings(t *testing.T) {
	vals := map[string]any{
		"block.2.timed_group.count":                     uint64(1),
		"block.2.timed_group.0.interval_length":         uint64(5),
		"block.2.timed_group.0.rd.latency_max":          uint64(11e6),
		"block.2.timed_group.0.write.latency_max":       uint64(13e6),
		"block.2.timed_group.0.fl.latency_max":          uint64(2e6),
		"block.2.timed_group.0.wr.queue_depth_avg":      2.25,
		"block.2.timed_group.x.rd_latency_max":          uint64(99e6),
		"block.20.timed_group.0.rd_latency_max":         uint64(77e6),
		"block.2.timed_group.0.zone_append_latency_max": uint64(5),
	}
	got := decodeTimed("block.2.", vals)
	want := sample.Timed{IntervalSec: 5, ReadMaxNs: 11e6, WriteMaxNs: 13e6, FlushMaxNs: 2e6, WriteQueueDepth: 2.25}
	if got == nil || *got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if decodeTimed("block.3.", vals) != nil {
		t.Error("a disk without groups has one")
	}
}

// Latency histograms as libvirt 12.1 returns them for a disk whose
// driver declares <statistics><latency-histogram type='read'> (the
// example of libvirt's own documentation), read into the histogram the
// percentiles are computed from.
func TestDecodeLatencyHistogram(t *testing.T) {
	params := []libvirt.TypedParam{param("block.count", uint32(1)), param("block.0.name", "vda"),
		param("block.0.latency_histogram.read.bin.count", uint64(9))}
	starts := []uint64{0, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}
	values := []uint64{0, 0, 0, 1047, 2131, 0, 0, 0, 0}
	for k := range starts {
		params = append(params, param(fmt.Sprintf("block.0.latency_histogram.read.bin.%d.start", k), starts[k]),
			param(fmt.Sprintf("block.0.latency_histogram.read.bin.%d.value", k), values[k]))
	}
	d := DecodeBlockStats("t1", params, time.Unix(100, 0))[0]
	want := &sample.Histogram{Boundaries: starts[1:], Bins: values}
	if !reflect.DeepEqual(d.ReadHist, want) || d.WriteHist != nil {
		t.Fatalf("read %+v write %+v, want read %+v", d.ReadHist, d.WriteHist, want)
	}
	if d.LatencySource() != sample.LatencyHistogram {
		t.Errorf("source %s", d.LatencySource())
	}
	// 3178 reads, the 99th percentile in the 10-100 µs bin.
	if p := sample.Percentile(d.ReadHist, 0.99); p < 0.01 || p > 0.1 {
		t.Errorf("p99 %v ms, want between 0.01 and 0.1", p)
	}
	timed, hist := StatsCarry(params)
	if timed || !hist {
		t.Errorf("StatsCarry: timed=%v histograms=%v", timed, hist)
	}
}

// A first bin above zero gets an empty bin below it; bins out of order
// or missing are no histogram.
func TestDecodeHistogramShapes(t *testing.T) {
	p := "block.0.latency_histogram.write."
	h := decodeHistogram(p, map[string]any{p + "bin.count": uint64(2), p + "bin.0.start": uint64(5), p + "bin.0.value": uint64(1),
		p + "bin.1.start": uint64(50), p + "bin.1.value": uint64(2)})
	if want := (&sample.Histogram{Boundaries: []uint64{5, 50}, Bins: []uint64{0, 1, 2}}); !reflect.DeepEqual(h, want) {
		t.Errorf("got %+v want %+v", h, want)
	}
	if h := decodeHistogram(p, map[string]any{p + "bin.count": uint64(2), p + "bin.0.start": uint64(50), p + "bin.1.start": uint64(5)}); h != nil {
		t.Errorf("bins out of order read as %+v", h)
	}
	if h := decodeHistogram(p, map[string]any{p + "bin.count": uint64(2), p + "bin.0.start": uint64(0)}); h != nil {
		t.Errorf("a missing bin read as %+v", h)
	}
}
