package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/state"
)

// fleetHost is one host of a fleet test: its own store and hypervisor,
// the fleet budgets on the shared etcd.
type fleetHost struct {
	*jobRig
	fl *fleet.Fleet
}

func newFleetHost(t *testing.T, cfg fleet.Config, name, shared string) *fleetHost {
	t.Helper()
	r := newJobRig(t, Options{MirrorDirs: []string{shared}})
	// Each host's disk has its own name, so the copies' targets in the
	// shared directory differ.
	img := r.f.images[jvda]
	img.Path = filepath.Join(r.dir, "src", name+".qcow2")
	if err := os.WriteFile(img.Path, []byte("source"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.f.images[jvda] = img
	f, err := fleet.New(context.Background(), cfg, name, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r.m.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: f}
	return &fleetHost{jobRig: r, fl: f}
}

// within steps host until cond holds on its job, or fails after d.
func (h *fleetHost) within(d time.Duration, id, what string, cond func(j *state.Job) bool) *state.Job {
	h.t.Helper()
	end := time.Now().Add(d)
	for {
		j := h.step(id)
		if cond(j) {
			return j
		}
		if time.Now().After(end) {
			h.t.Fatalf("%s: not %s after %s: %+v", id, what, d, j)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two hosts, one budget of one copy on a real three-member etcd: one
// copy runs, the other waits with the fleet's reason and starts when the
// first ends; with every etcd member down nothing new starts and the
// running copy is slowed to the floor speed, not cancelled; with etcd
// back it gets its speed back.
func TestFleetBudgetOnEtcd(t *testing.T) {
	e := lab.StartEtcdT(t)
	shared := t.TempDir()
	cfg := fleet.Config{Endpoints: e.Endpoints(), LeaseTTL: 3 * time.Second, RequestTimeout: time.Second,
		DialTimeout: 5 * time.Second, FloorSpeed: 1 << 20,
		Budgets: []fleet.Budget{{Name: "nfs", Dirs: []string{shared}, MaxCopies: 1, MaxSpeed: 16 << 20}}}
	a := newFleetHost(t, cfg, "hv-a", shared)
	b := newFleetHost(t, cfg, "hv-b", shared)

	ja := a.mustPlan(mirrorReq(shared))
	ja = a.step(ja.ID)
	a.expect(ja, state.JobRunning)
	jb := b.mustPlan(mirrorReq(shared))
	jb = b.step(jb.ID)
	b.expect(jb, state.JobPlanned)
	if !strings.HasPrefix(jb.Waiting, "fleet budget nfs: 1 of 1") || !strings.Contains(jb.Waiting, "hv-a") {
		t.Fatalf("hv-b waits for %q", jb.Waiting)
	}

	if _, err := a.m.Cancel(ja.ID); err != nil {
		t.Fatal(err)
	}
	a.within(5*time.Second, ja.ID, "cancelled", func(j *state.Job) bool { return j.State == state.JobCancelled })
	jb = b.within(5*time.Second, jb.ID, "running", func(j *state.Job) bool { return j.State == state.JobRunning })
	if jb.Speed != 16<<20 {
		t.Fatalf("speed %d, want the budget's max_speed", jb.Speed)
	}

	// hv-a plans another copy: it waits behind hv-b.
	img := a.f.images[jvda]
	img.Path = filepath.Join(a.dir, "src", "hv-a2.qcow2")
	os.WriteFile(img.Path, []byte("source"), 0o644)
	a.f.images[jvda] = img
	ja2 := a.mustPlan(mirrorReq(shared))
	ja2 = a.step(ja2.ID)
	a.expect(ja2, state.JobPlanned)

	if err := e.StopAll(); err != nil {
		t.Fatal(err)
	}
	jb = b.within(10*time.Second, jb.ID, "slowed", func(j *state.Job) bool { return j.SlowedTo == 1<<20 })
	b.expect(jb, state.JobRunning)
	b.f.mu.Lock()
	speed := b.f.speeds[jb.ID]
	b.f.mu.Unlock()
	if speed != 1<<20 {
		t.Fatalf("hv-b's copy runs at %d, want the floor speed", speed)
	}
	ja2 = a.step(ja2.ID)
	a.expect(ja2, state.JobPlanned)
	if !strings.Contains(ja2.Waiting, "etcd unreachable") && !strings.Contains(ja2.Waiting, "fleet budget") {
		t.Fatalf("hv-a waits for %q", ja2.Waiting)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	jb = b.within(20*time.Second, jb.ID, "back to its speed", func(j *state.Job) bool { return j.SlowedTo == 0 })
	b.f.mu.Lock()
	speed = b.f.speeds[jb.ID]
	b.f.mu.Unlock()
	if speed != 16<<20 || jb.Waiting != "" {
		t.Fatalf("hv-b's copy runs at %d (waiting %q), want its own speed back", speed, jb.Waiting)
	}
	for _, c := range b.f.calls {
		if c == "cancel" {
			t.Fatal("a copy that lost its slot was cancelled")
		}
	}
	ja2 = a.step(ja2.ID)
	a.expect(ja2, state.JobPlanned) // hv-b still holds the one slot
}
