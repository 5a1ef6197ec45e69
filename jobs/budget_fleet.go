package jobs

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Fleet is what the job manager needs of the fleet budgets on etcd
// (*fleet.Fleet; a fake in tests). See docs/fleet.md.
type Fleet interface {
	Acquire(ctx context.Context, c fleet.Copy) (granted bool, why string, err error)
	Retake(ctx context.Context, c fleet.Copy) (granted bool, why string, err error)
	Release(ctx context.Context, jobID string) error
	ReleaseExcept(ctx context.Context, live []string) error
	State(jobID string) fleet.State
	Changed() <-chan struct{}
	FloorSpeed() uint64
	Match(dirs ...string) []fleet.Budget
	Cap(c fleet.Copy) uint64
}

// SlotKeeper is a Budget whose slots a running job can lose and get back:
// a fleet budget held under its host's lease. The manager asks it at each
// step of a running copy at what speed the copy should run, and looks
// again whenever Changed is signalled.
type SlotKeeper interface {
	Budget
	// Keep takes back a running job's lost slot where it can. While the
	// slot is not held it returns the floor speed (bytes/s) and why.
	Keep(j *state.Job) (floor uint64, why string)
	// Adopted is told, once at start after every in-flight job was held,
	// which jobs are still unended: slots of the others are released.
	Adopted(live []string)
	Changed() <-chan struct{}
}

// FleetBudget is the fleet-wide budget beside the host's own: a copy
// starts only when Local lets it and it holds a slot in every fleet
// budget its directories fall under (its target directory, and for a
// stream its source's). A copy under no fleet budget answers to Local
// alone.
type FleetBudget struct {
	Local Budget
	Fleet Fleet
	Log   hclog.Logger
	// Timeout bounds each call into the fleet (default 5s); the fleet's
	// own request timeout is usually shorter.
	Timeout time.Duration
}

var _ SlotKeeper = (*FleetBudget)(nil)

// copyOf is what j asks of the fleet; ok is false when no fleet budget
// holds its directories. A copy with no speed, or faster than its
// budgets allow, is counted at (and will run at) the lowest max_speed.
func (b *FleetBudget) copyOf(j *state.Job) (fleet.Copy, bool) {
	dirs := []string{j.TargetDir()}
	if j.Kind == policy.KnobStream {
		dirs = append(dirs, state.DirOf(j.Source))
	}
	matched := b.Fleet.Match(dirs...)
	if len(matched) == 0 {
		return fleet.Copy{}, false
	}
	c := fleet.Copy{JobID: j.ID, VM: j.VM, Disk: j.Disk, Kind: string(j.Kind), Speed: j.Speed}
	for _, m := range matched {
		c.Budgets = append(c.Budgets, m.Name)
	}
	if lim := b.Fleet.Cap(c); lim > 0 && (c.Speed == 0 || c.Speed > lim) {
		c.Speed = lim
	}
	return c, true
}

func (b *FleetBudget) ctx() (context.Context, context.CancelFunc) {
	d := b.Timeout
	if d <= 0 {
		d = 5 * time.Second
	}
	return context.WithTimeout(context.Background(), d)
}

// Acquire implements Budget: the host's budgets first, then the fleet's.
// A copy the host holds back gives up its place in the fleet's line, so
// it does not hold up other hosts' copies that could run.
func (b *FleetBudget) Acquire(j *state.Job, now time.Time) (bool, string) {
	c, inFleet := b.copyOf(j)
	ok, why := b.Local.Acquire(j, now)
	if !ok {
		if inFleet && b.Fleet.State(j.ID) == fleet.Waiting {
			b.release(j.ID)
		}
		return false, why
	}
	if !inFleet {
		return true, ""
	}
	ctx, cancel := b.ctx()
	defer cancel()
	granted, why, err := b.Fleet.Acquire(ctx, c)
	if !granted {
		b.Local.Release(j)
		if why == "" && err != nil {
			why = "etcd unreachable: " + err.Error()
		}
		if strings.HasPrefix(why, "budget ") {
			why = "fleet " + why
		}
		return false, why
	}
	j.Speed = c.Speed // saved by the manager with the start
	return true, ""
}

// Hold implements Budget: a job found running at start takes its fleet
// slot back (or queues for it before every copy not started) before
// anything else starts.
func (b *FleetBudget) Hold(j *state.Job) {
	b.Local.Hold(j)
	c, inFleet := b.copyOf(j)
	if !inFleet {
		return
	}
	ctx, cancel := b.ctx()
	defer cancel()
	if granted, why, err := b.Fleet.Retake(ctx, c); !granted {
		b.log().Warn("running copy without its fleet slot; it runs at the floor speed until it has it again",
			"job", j.ID, "why", why, "error", errText(err))
	}
}

// Adopted implements SlotKeeper.
func (b *FleetBudget) Adopted(live []string) {
	ctx, cancel := b.ctx()
	defer cancel()
	if err := b.Fleet.ReleaseExcept(ctx, live); err != nil {
		// Those slots sit under the lease of the agent before; they
		// go when it runs out.
		b.log().Warn("slots of copies that ended while away not released", "error", err.Error())
	}
}

// Release implements Budget.
func (b *FleetBudget) Release(j *state.Job) {
	b.Local.Release(j)
	if _, inFleet := b.copyOf(j); inFleet {
		b.release(j.ID)
	}
}

func (b *FleetBudget) release(id string) {
	ctx, cancel := b.ctx()
	defer cancel()
	if err := b.Fleet.Release(ctx, id); err != nil {
		b.log().Warn("fleet slot release deferred: retried until etcd answers", "job", id, "error", err.Error())
	}
}

// Keep implements SlotKeeper.
func (b *FleetBudget) Keep(j *state.Job) (uint64, string) {
	c, inFleet := b.copyOf(j)
	if !inFleet || b.Fleet.State(j.ID) == fleet.Held {
		return 0, ""
	}
	ctx, cancel := b.ctx()
	defer cancel()
	granted, why, err := b.Fleet.Retake(ctx, c)
	if granted {
		return 0, ""
	}
	if why == "" {
		why = "fleet slot not held: " + errText(err)
	}
	return max(b.Fleet.FloorSpeed(), 1), why
}

// Changed implements SlotKeeper.
func (b *FleetBudget) Changed() <-chan struct{} { return b.Fleet.Changed() }

func (b *FleetBudget) log() hclog.Logger {
	if b.Log == nil {
		return hclog.NewNullLogger()
	}
	return b.Log
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
