package jobs

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func TestLocalBudgetWindowsAndDirs(t *testing.T) {
	w, _ := policy.ParseWindow("01:00-05:00")
	b := &LocalBudget{Host: 3, PerDir: 1, Windows: []policy.Window{w}}
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	j1 := &state.Job{ID: "1", Source: "/a/x", Dest: "/fast/x"}
	if ok, why := b.Acquire(j1, at); ok || !strings.Contains(why, "window") {
		t.Fatalf("outside window: %v %q", ok, why)
	}
	at = time.Date(2026, 1, 1, 2, 0, 0, 0, time.Local)
	if ok, _ := b.Acquire(j1, at); !ok {
		t.Fatal("inside window refused")
	}
	j2 := &state.Job{ID: "2", Source: "/b/y", Dest: "/fast/y"}
	if ok, why := b.Acquire(j2, at); ok || !strings.Contains(why, "directory") {
		t.Fatalf("second job into one directory: %v %q", ok, why)
	}
	b.Release(j1)
	b.Release(j1)
	if ok, _ := b.Acquire(j2, at); !ok {
		t.Fatal("released slot not given")
	}
}

func TestJobIDIsQEMUSafe(t *testing.T) {
	id := JobID(policy.KnobConvert, state.Target{VM: "tenant a/b", Disk: "vd a"}, "/x", "/y")
	if !strings.HasPrefix(id, "qtune-convert-tenant_a_b-vd_a-") || strings.ContainsAny(id, " /") {
		t.Fatalf("id %q", id)
	}
	if id != JobID(policy.KnobConvert, state.Target{VM: "tenant a/b", Disk: "vd a"}, "/x", "/y") {
		t.Fatal("id not deterministic")
	}
}

func TestJobPivotThatDoesNotTakeIsNotRetriedForever(t *testing.T) {
	r := newJobRig(t, Options{})
	r.f.failOn["pivot"] = errors.New("not ready after all")
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.set(j.ID, func(h *HVJob) { h.Ready, h.Status = true, "ready" })
	for i := 0; i < 10 && !j.State.Final(); i++ {
		r.clk.Advance(time.Minute)
		j = r.step(j.ID)
	}
	r.expect(j, state.JobFailed)
	if j.PivotTries != maxPivotTries || r.f.images[jvda].Path != j.Source {
		t.Fatalf("pivot tries %d, VM on %s", j.PivotTries, r.f.images[jvda].Path)
	}
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatal("target of a copy that never pivoted kept")
	}
}
