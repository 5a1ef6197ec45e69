package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/state"
)

// fakeFleet is a fleet of one budget in memory: one slot, granted to
// the first copy to ask while it is free, and a lease the test takes away.
type fakeFleet struct {
	mu       sync.Mutex
	dir      string
	holder   string
	states   map[string]fleet.State
	leaseOK  bool
	asked    []fleet.Copy
	released []string
	except   []string
	changed  chan struct{}
}

func newFakeFleet(dir string) *fakeFleet {
	return &fakeFleet{dir: dir, states: map[string]fleet.State{}, leaseOK: true, changed: make(chan struct{}, 1)}
}

func (f *fakeFleet) take(c fleet.Copy, running bool) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, c)
	if !f.leaseOK {
		if running {
			f.states[c.JobID] = fleet.Lost
		}
		return false, "no fleet lease, etcd unreachable: connection refused", errors.New("connection refused")
	}
	if f.holder == "" || f.holder == c.JobID {
		f.holder, f.states[c.JobID] = c.JobID, fleet.Held
		return true, "", nil
	}
	if running {
		f.states[c.JobID] = fleet.Lost
	} else {
		f.states[c.JobID] = fleet.Waiting
	}
	return false, "budget nfs: 1 of 1 copies running (first: hv2 " + f.holder + ")", nil
}

func (f *fakeFleet) Acquire(_ context.Context, c fleet.Copy) (bool, string, error) {
	return f.take(c, false)
}
func (f *fakeFleet) Retake(_ context.Context, c fleet.Copy) (bool, string, error) {
	return f.take(c, true)
}
func (f *fakeFleet) Release(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, id)
	delete(f.states, id)
	if f.holder == id {
		f.holder = ""
	}
	return nil
}
func (f *fakeFleet) ReleaseExcept(_ context.Context, live []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.except = live
	return nil
}
func (f *fakeFleet) State(id string) fleet.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[id]
}
func (f *fakeFleet) Changed() <-chan struct{} { return f.changed }
func (f *fakeFleet) FloorSpeed() uint64       { return 1 << 20 }
func (f *fakeFleet) Match(dirs ...string) []fleet.Budget {
	for _, d := range dirs {
		if d == f.dir {
			return []fleet.Budget{{Name: "nfs", Dirs: []string{f.dir}, MaxCopies: 1, MaxSpeed: 16 << 20}}
		}
	}
	return nil
}
func (f *fakeFleet) Cap(fleet.Copy) uint64 { return 16 << 20 }

// loseLease: every held slot is lost, as the fleet does when its lease
// is not renewed in time.
func (f *fakeFleet) loseLease() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaseOK, f.holder = false, ""
	for id, s := range f.states {
		if s == fleet.Held {
			f.states[id] = fleet.Lost
		}
	}
}

func TestFleetBudgetWaitsStartsAndReleases(t *testing.T) {
	r := newJobRig(t, Options{})
	ff := newFakeFleet(r.fast())
	r.m.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: ff}

	ff.holder = "someone-else"
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobPlanned)
	if !strings.HasPrefix(j.Waiting, "fleet budget nfs: 1 of 1 copies running") {
		t.Fatalf("waiting %q", j.Waiting)
	}
	if len(r.f.jobs) != 0 {
		t.Fatal("a copy started without its fleet slot")
	}

	// etcd unreachable: still no start, and the reason says so.
	ff.loseLease()
	j = r.step(j.ID)
	r.expect(j, state.JobPlanned)
	if !strings.Contains(j.Waiting, "etcd unreachable") {
		t.Fatalf("waiting %q", j.Waiting)
	}

	ff.mu.Lock()
	ff.leaseOK, ff.holder = true, ""
	ff.mu.Unlock()
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	if j.Speed != 16<<20 {
		t.Fatalf("speed %d: an unbounded copy runs at its budget's max_speed", j.Speed)
	}
	last := ff.asked[len(ff.asked)-1]
	if last.Budgets[0] != "nfs" || last.VM != "vm1" || last.Disk != "vda" || last.Kind != "mirror" || last.Speed != 16<<20 {
		t.Fatalf("copy asked for %+v", last)
	}

	if _, err := r.m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	r.step(j.ID)
	j = r.step(j.ID)
	r.expect(j, state.JobCancelled)
	if ff.holder != "" || len(ff.released) == 0 || ff.released[len(ff.released)-1] != j.ID {
		t.Fatalf("slot not released at the end: holder %q released %v", ff.holder, ff.released)
	}
}

func TestFleetBudgetLeaseLostSlowsNeverCancels(t *testing.T) {
	r := newJobRig(t, Options{})
	ff := newFakeFleet(r.fast())
	r.m.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: ff}
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)

	ff.loseLease()
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	if r.f.speeds[j.ID] != 1<<20 || j.SlowedTo != 1<<20 || !strings.Contains(j.Waiting, "etcd unreachable") {
		t.Fatalf("speed %d slowed %d waiting %q: want the floor speed", r.f.speeds[j.ID], j.SlowedTo, j.Waiting)
	}
	for _, c := range r.f.calls {
		if c == "cancel" {
			t.Fatal("a copy that lost its slot was cancelled")
		}
	}

	ff.mu.Lock()
	ff.leaseOK = true
	ff.mu.Unlock()
	j = r.step(j.ID)
	if r.f.speeds[j.ID] != 16<<20 || j.SlowedTo != 0 || j.Waiting != "" {
		t.Fatalf("speed %d slowed %d waiting %q after the slot came back", r.f.speeds[j.ID], j.SlowedTo, j.Waiting)
	}
}

func TestFleetBudgetRestartRetakesFirst(t *testing.T) {
	r := newJobRig(t, Options{})
	ff := newFakeFleet(r.fast())
	r.m.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: ff}
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)

	// A new manager over the same store and hypervisor: the agent
	// restarted. Its fleet knows nothing yet.
	ff2 := newFakeFleet(r.fast())
	m2 := NewManager(r.f, r.store, r.m.o)
	m2.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: ff2}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m2.Run(ctx) // the recovery and one step
	if len(ff2.asked) == 0 || ff2.asked[0].JobID != j.ID || ff2.State(j.ID) != fleet.Held {
		t.Fatalf("running copy not retaken first: %+v", ff2.asked)
	}
	if len(ff2.except) != 1 || ff2.except[0] != j.ID {
		t.Fatalf("ReleaseExcept(%v), want the one live job", ff2.except)
	}
}

func TestFleetBudgetOutsideEveryBudget(t *testing.T) {
	r := newJobRig(t, Options{})
	ff := newFakeFleet("/srv/elsewhere")
	r.m.o.Budget = &FleetBudget{Local: &LocalBudget{}, Fleet: ff}
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	if len(ff.asked) != 0 {
		t.Fatalf("fleet asked for a copy under no budget: %+v", ff.asked)
	}
}
