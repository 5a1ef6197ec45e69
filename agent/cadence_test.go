package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func TestWatchListNamesRulesKnobsAndJobs(t *testing.T) {
	var w watchList
	if w.reason("a") != "" {
		t.Fatal("an empty list watches a VM")
	}
	w.update([]policy.StateInfo{{Rule: "calm", VM: "a", Disk: "vda", State: policy.StatePending}, {Rule: "calm", VM: "a", Disk: "vdb", State: policy.StatePending}},
		[]state.Owned{{Target: state.Target{VM: "b", Disk: "vda"}, Knob: policy.KnobThrottle}},
		[]state.Job{{Kind: policy.KnobStream, Target: state.Target{VM: "c"}, State: state.JobRunning}, {Kind: policy.KnobStream, Target: state.Target{VM: "d"}, State: state.JobDone}})
	for vm, want := range map[string]string{"a": "rule calm pending", "b": "throttle held", "c": "stream job", "d": ""} {
		if got := w.reason(vm); got != want {
			t.Errorf("%s: %q, want %q", vm, got, want)
		}
	}
	// Rebuilt each cycle: a rule gone inactive no longer watches its VM.
	w.update(nil, nil, nil)
	if w.reason("a") != "" {
		t.Error("VM a still watched")
	}
}

func TestRetainedShowsQuietVMsBetweenSamples(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	pt := func(vm, disk string, at time.Time) sample.Point {
		return sample.Point{Disk: sample.Disk{VM: vm, Name: disk, Time: at}}
	}
	names := func(ps []sample.Point) string {
		var s []string
		for _, p := range ps {
			s = append(s, fmt.Sprintf("%s/%s@%d", p.Disk.VM, p.Disk.Name, p.Disk.Time.Sub(t0)/time.Second))
		}
		return strings.Join(s, " ")
	}
	var r retained
	got := r.merge([]sample.Point{pt("a", "vda", t0), pt("b", "vda", t0), pt("b", "vdb", t0)}, nil, nil)
	if names(got) != "a/vda@0 b/vda@0 b/vdb@0" {
		t.Fatalf("first cycle %s", names(got))
	}
	t1 := t0.Add(time.Second)
	got = r.merge([]sample.Point{pt("b", "vda", t1), pt("b", "vdb", t1)}, nil, nil)
	if names(got) != "a/vda@0 b/vda@1 b/vdb@1" {
		t.Errorf("a quiet VM between samples: %s", names(got))
	}
	got = r.merge(nil, map[string]error{"b": errors.New("x")}, []string{"a"})
	if names(got) != "" {
		t.Errorf("a VM gone and one failing are still shown: %s", names(got))
	}
}

func TestSampleAgeMetric(t *testing.T) {
	m := newMetrics()
	at := time.Date(2026, 1, 5, 10, 0, 10, 0, time.UTC)
	s := snapshotWith(2, 0)
	s.at = at
	s.points[0].Disk.Time = at.Add(-7 * time.Second)
	s.points[1].Disk.Time = at.Add(-500 * time.Millisecond)
	m.publish(s)
	want := `
# HELP qtune_disk_sample_age_seconds Age of each disk's last sample as of the last cycle: under an interval for a busy or watched VM, up to idle_interval for a quiet one.
# TYPE qtune_disk_sample_age_seconds gauge
qtune_disk_sample_age_seconds{disk="a-disk",vm="a"} 7
qtune_disk_sample_age_seconds{disk="b-disk",vm="a"} 0.5
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "qtune_disk_sample_age_seconds"); err != nil {
		t.Error(err)
	}
}
