package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/qemuimg"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Request asks for a block job, from a rule or by hand.
type Request struct {
	Kind policy.Knob `json:"kind"`
	state.Target
	Rule      string        `json:"rule,omitempty"`
	Base      string        `json:"base,omitempty"`       // stream: down to this image
	TargetDir string        `json:"target_dir,omitempty"` // mirror
	Layout    policy.Layout `json:"layout,omitempty"`     // mirror, convert
	Speed     uint64        `json:"speed,omitempty"`
	CopyMode  string        `json:"copy_mode,omitempty"`
}

// RequestFromDecision turns a rule's decision into a job request.
func RequestFromDecision(d policy.Decision) (Request, bool) {
	spec, ok := jobKindOf(d.Knob)
	if !ok {
		return Request{}, false
	}
	r := Request{Kind: d.Knob, Target: state.Target{VM: d.VM, Disk: d.Disk}, Rule: d.Rule}
	if spec.fromAction != nil {
		spec.fromAction(d.Action, &r)
	}
	return r, true
}

// Options configure a Manager.
type Options struct {
	MirrorDirs      []string      // the only directories a mirror may write into
	Budget          Budget        // default: a LocalBudget with its defaults
	PollInterval    time.Duration // default 1s
	ConvergeTimeout time.Duration // a copy not ready by then is given up (or goes write-blocking first, where allowed) (default 30m)
	MaxAttempts     int           // starts tried before a job fails (default 3)
	Backoff         time.Duration // wait before the second attempt, doubled after (default 1m)
	FailedHold      time.Duration // a failed job's disk is not tried again by a rule before then (default 6h)
	KeepEnded       time.Duration // ended jobs are forgotten after (default 7 days)
	SpaceMargin     uint64        // free space asked beyond what the copy needs (default 64 MiB, at least 5%)
	CallTimeout     time.Duration // default 10s
	// Wanted says whether a ready job should pivot (its rule is still in
	// the policy); nil means always. A job asked for by hand always is.
	Wanted func(j *state.Job) bool
	// PivotGate holds a ready copy (source and target kept in sync) until
	// it says yes: a quiet moment, a window. nil pivots at once.
	PivotGate func(j *state.Job) bool
	Clock     clock.Clock
	Log       hclog.Logger
	// QemuImg is the qemu-img the jobs run (the agent's qemu_img).
	QemuImg qemuimg.Runner
	// CreateImage makes a copy's target (default: QemuImg create).
	CreateImage func(ctx context.Context, path string, l policy.Layout, size uint64) error
	// FreeSpace reports the bytes free to qtune in a directory (default statfs).
	FreeSpace func(dir string) (uint64, error)
	// StatFS reads a failed copy's target filesystem for its reason
	// (default statfs; apart from FreeSpace, which plans).
	StatFS func(dir string) (hoststat.FSInfo, error)
	// AllowWriteBlocking lets copies run in write-blocking mode, asked for
	// or after ConvergeTimeout. Off by default: QEMU can crash when such
	// a copy ends before it is ready (jobs_wblock.go).
	AllowWriteBlocking bool
}

func (o Options) withDefaults() Options {
	if o.Budget == nil {
		o.Budget = &LocalBudget{}
	}
	durDef := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	durDef(&o.PollInterval, time.Second)
	durDef(&o.ConvergeTimeout, 30*time.Minute)
	durDef(&o.Backoff, time.Minute)
	durDef(&o.FailedHold, 6*time.Hour)
	durDef(&o.KeepEnded, 7*24*time.Hour)
	durDef(&o.CallTimeout, 10*time.Second)
	o.MaxAttempts = orInt(o.MaxAttempts, 3)
	if o.SpaceMargin == 0 {
		o.SpaceMargin = 64 << 20
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.CreateImage == nil {
		o.CreateImage = createImage(o.QemuImg)
	}
	if o.FreeSpace == nil {
		o.FreeSpace = FreeSpace
	}
	if o.StatFS == nil {
		o.StatFS = hoststat.StatFS
	}
	return o
}

// Manager runs qtune's block jobs: it plans them (refusing what is
// unsafe or pointless), starts them within the budget, follows them by
// polling and events, pivots ready copies, and after a restart adopts or
// cleans up what the store says was in flight. It is safe for concurrent
// use; one goroutine (Run) drives the jobs.
type Manager struct {
	driver Driver
	store  *state.Store
	o      Options
	log    hclog.Logger
	poke   chan struct{}

	// mu serialises planning and stepping: a disk must never get two jobs.
	mu sync.Mutex
}

// NewManager returns a manager running jobs through d and keeping them
// in s.
func NewManager(d Driver, s *state.Store, o Options) *Manager {
	o = o.withDefaults()
	return &Manager{driver: d, store: s, o: o, log: o.Log, poke: make(chan struct{}, 1)}
}

// Notify asks for a prompt look at the jobs (a job event arrived).
func (m *Manager) Notify() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run drives the jobs until ctx ends. The first pass is the recovery:
// jobs the store says were in flight are reconciled with the hypervisor.
func (m *Manager) Run(ctx context.Context) {
	m.holdRunning()
	t := time.NewTicker(m.o.PollInterval)
	defer t.Stop()
	var slots <-chan struct{} // a fleet slot lost or taken back: speeds to set
	if k, ok := m.o.Budget.(SlotKeeper); ok {
		slots = k.Changed()
	}
	for {
		m.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.poke:
		case <-slots:
		}
	}
}

// holdRunning takes budget slots for jobs that were running when qtune
// stopped: they still run, whatever the budget says now.
func (m *Manager) holdRunning() {
	jobs, err := m.store.Jobs()
	if err != nil {
		m.log.Error("read jobs", "error", err.Error())
		return
	}
	var live []string
	for i := range jobs {
		j := &jobs[i]
		if j.State.Final() {
			continue
		}
		live = append(live, j.ID)
		if j.State != state.JobPlanned {
			m.o.Budget.Hold(j)
			m.log.Info("block job in flight at start; adopting it", "job", j.ID, "state", string(j.State))
		}
	}
	// Planned jobs count as live: their place in a fleet's line is kept.
	if k, ok := m.o.Budget.(SlotKeeper); ok {
		k.Adopted(live)
	}
}

// Jobs lists the jobs, newest first.
func (m *Manager) Jobs() ([]state.Job, error) {
	jobs, err := m.store.Jobs()
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].Created.After(jobs[b].Created) })
	return jobs, err
}

// Cancel asks for a job to end, leaving its VM on the source. The flag is
// written first; the next step acts on it.
func (m *Manager) Cancel(id string) (*state.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.store.Job(id)
	if err != nil {
		return nil, err
	}
	if j.State.Final() {
		return j, fmt.Errorf("job %s already %s", id, j.State)
	}
	if j.State == state.JobPivoting {
		return j, fmt.Errorf("job %s is pivoting; a pivot cannot be cancelled", id)
	}
	j.CancelAsked = true
	if err := m.save(j); err != nil {
		return j, err
	}
	m.Notify()
	return j, nil
}

func (m *Manager) save(j *state.Job) error {
	j.Updated = m.o.Clock.Now()
	return m.store.PutJob(j)
}

func (m *Manager) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.o.CallTimeout)
}

// activeOn returns the unended job of a disk, if any.
func (m *Manager) activeOn(t state.Target) (*state.Job, error) {
	jobs, err := m.store.Jobs()
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		if jobs[i].Target == t && !jobs[i].State.Final() {
			return &jobs[i], nil
		}
	}
	return nil, nil
}

// createImage makes a new image with q (format and layout from l).
func createImage(q qemuimg.Runner) func(ctx context.Context, path string, l policy.Layout, size uint64) error {
	return func(ctx context.Context, path string, l policy.Layout, size uint64) error {
		format := l.Format
		if format == "" {
			format = "qcow2"
		}
		return q.Create(ctx, path, format, layoutOpts(l), size)
	}
}

// layoutOpts are qemu-img's creation options for the layout l.
func layoutOpts(l policy.Layout) []string {
	var opts []string
	if l.ClusterSize != 0 {
		opts = append(opts, "cluster_size="+strconv.FormatUint(l.ClusterSize, 10))
	}
	if l.Preallocation != "" {
		opts = append(opts, "preallocation="+l.Preallocation)
	}
	if l.ExtendedL2 != nil {
		opts = append(opts, "extended_l2="+onOff(*l.ExtendedL2))
	}
	if l.CompressionType != "" {
		opts = append(opts, "compression_type="+l.CompressionType)
	}
	return opts
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// FreeSpace is the space an unprivileged writer could still use in dir
// (qtune does not count on the root reserve).
func FreeSpace(dir string) (uint64, error) {
	fs, err := hoststat.StatFS(dir)
	if err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return fs.Free, nil
}

// removeDest removes a target qtune created, unless the VM runs on it.
func (m *Manager) removeDest(j *state.Job) {
	if !j.DestCreated || j.Pivoted || j.Dest == "" {
		return
	}
	if err := os.Remove(j.Dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("cannot remove the unused copy target", "job", j.ID, "path", j.Dest, "error", err.Error())
		return
	}
	j.DestCreated = false
}

// allowedDir reports whether dir is one of the mirror directories (after
// cleaning; symlinks are not followed, so a link cannot widen the list).
func (m *Manager) allowedDir(dir string) bool {
	dir = filepath.Clean(dir)
	for _, d := range m.o.MirrorDirs {
		if filepath.Clean(d) == dir {
			return true
		}
	}
	return false
}
