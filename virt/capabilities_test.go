package virt

import (
	"testing"

	"github.com/digitalocean/go-libvirt"
)

func TestStatsCarry(t *testing.T) {
	p := func(names ...string) []libvirt.TypedParam {
		var out []libvirt.TypedParam
		for _, n := range names {
			out = append(out, libvirt.TypedParam{Field: n})
		}
		return out
	}
	if timed, hist := StatsCarry(p("block.count", "block.0.rd.reqs", "block.0.rd.times")); timed || hist {
		t.Fatalf("plain stats: timed=%v histograms=%v", timed, hist)
	}
	if timed, hist := StatsCarry(p("block.0.rd.reqs", "block.0.timed_group.0.interval", "block.0.timed_group.0.rd_latency_avg")); !timed || hist {
		t.Fatalf("timed stats: timed=%v histograms=%v", timed, hist)
	}
	if _, hist := StatsCarry(p("block.1.latency_histogram.rd.bin.0.start")); !hist {
		t.Fatal("histogram not seen")
	}
	if got := versionString(9000000); got != "9.0.0" {
		t.Fatal(got)
	}
	if got := versionString(11003000); got != "11.3.0" {
		t.Fatal(got)
	}
}
