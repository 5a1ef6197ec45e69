package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// fakeJobs is a hypervisor in memory: one disk per target, jobs that move
// only when the test says so.
type fakeJobs struct {
	mu      sync.Mutex
	images  map[state.Target]DiskImage
	jobs    map[string]*HVJob // by id
	gone    map[string]bool   // VMs whose QEMU went away
	calls   []string
	failOn  map[string]error
	foreign []HVJob
	wb      []bool            // the copy mode of each start: write-blocking or not
	speeds  map[string]uint64 // the last speed set, by job
}

func newFakeJobs() *fakeJobs {
	return &fakeJobs{images: map[state.Target]DiskImage{}, jobs: map[string]*HVJob{}, gone: map[string]bool{}, failOn: map[string]error{}}
}

func (f *fakeJobs) call(what string) error {
	f.calls = append(f.calls, what)
	return f.failOn[what]
}

func (f *fakeJobs) Image(_ context.Context, t state.Target) (DiskImage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[t.VM] {
		return DiskImage{}, tuning.ErrVMGone
	}
	img, ok := f.images[t]
	if !ok {
		return DiskImage{}, errors.New("no such disk")
	}
	return img, nil
}

func (f *fakeJobs) BlockJobs(_ context.Context, vm string) ([]HVJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[vm] {
		return nil, tuning.ErrVMGone
	}
	out := append([]HVJob(nil), f.foreign...)
	for _, j := range f.jobs {
		out = append(out, *j)
	}
	return out, nil
}

func (f *fakeJobs) StartJob(_ context.Context, j *state.Job, img DiskImage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("start"); err != nil {
		return err
	}
	f.wb = append(f.wb, j.WriteBlocking)
	f.jobs[j.ID] = &HVJob{ID: j.ID, Type: string(j.Kind), Status: "running", Length: img.VirtualSize}
	return nil
}

func (f *fakeJobs) Pivot(_ context.Context, j *state.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("pivot"); err != nil {
		return err
	}
	h := f.jobs[j.ID]
	h.Status = "concluded"
	img := f.images[j.Target]
	img.Path = j.Dest
	f.images[j.Target] = img
	return nil
}

func (f *fakeJobs) CancelJob(_ context.Context, j *state.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("cancel")
	if h := f.jobs[j.ID]; h != nil {
		h.Status = "concluded"
	}
	return nil
}

func (f *fakeJobs) Finish(_ context.Context, j *state.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("finish")
	delete(f.jobs, j.ID)
	return nil
}

func (f *fakeJobs) SetSpeed(_ context.Context, j *state.Job, speed uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("speed"); err != nil {
		return err
	}
	if f.speeds == nil {
		f.speeds = map[string]uint64{}
	}
	f.speeds[j.ID] = speed
	return nil
}

// set changes a hypervisor job under the lock.
func (f *fakeJobs) set(id string, fn func(h *HVJob)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.jobs[id])
}

type jobRig struct {
	t     *testing.T
	f     *fakeJobs
	m     *Manager
	store *state.Store
	clk   *clock.Fake
	dir   string
	free  uint64
}

var jvda = state.Target{VM: "vm1", Disk: "vda"}

func newJobRig(t *testing.T, o Options) *jobRig {
	t.Helper()
	st, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &jobRig{t: t, f: newFakeJobs(), store: st, clk: clock.NewFake(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)), dir: t.TempDir(), free: 100 << 30}
	src := filepath.Join(r.dir, "src", "disk.qcow2")
	os.MkdirAll(filepath.Dir(src), 0o755)
	os.WriteFile(src, []byte("source"), 0o644)
	r.f.images[jvda] = DiskImage{Path: src, Format: "qcow2", Node: "n", VirtualSize: 1 << 30, Allocated: 200 << 20, ClusterSize: 64 << 10}
	o.Clock = r.clk
	o.CreateImage = func(_ context.Context, path string, _ policy.Layout, _ uint64) error {
		return os.WriteFile(path, []byte("target"), 0o644)
	}
	o.FreeSpace = func(string) (uint64, error) { return r.free, nil }
	if o.MirrorDirs == nil {
		o.MirrorDirs = []string{r.fast()}
	}
	os.MkdirAll(r.fast(), 0o755)
	r.m = NewManager(r.f, st, o)
	return r
}

func (r *jobRig) fast() string { return filepath.Join(r.dir, "fast") }

func (r *jobRig) plan(req Request) (Planned, error) {
	r.t.Helper()
	return r.m.Plan(context.Background(), req, "policy", false)
}

func (r *jobRig) mustPlan(req Request) *state.Job {
	r.t.Helper()
	p, err := r.plan(req)
	if err != nil || p.Result != state.ResultApplied {
		r.t.Fatalf("plan %+v: %s %s %v", req, p.Result, p.Reason, err)
	}
	return p.Job
}

// step runs one step and returns the job as stored.
func (r *jobRig) step(id string) *state.Job {
	r.t.Helper()
	r.m.Step(context.Background())
	j, err := r.store.Job(id)
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

func (r *jobRig) expect(j *state.Job, s state.JobState) {
	r.t.Helper()
	if j.State != s {
		r.t.Fatalf("job %s is %s (%s, waiting %q), want %s", j.ID, j.State, j.Error, j.Waiting, s)
	}
}

func mirrorReq(dir string) Request {
	return Request{Kind: policy.KnobMirror, Target: jvda, Rule: "move", TargetDir: dir}
}

func TestJobMirrorPivotsAndKeepsSource(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	if want := filepath.Join(r.fast(), "disk.qcow2"); j.Dest != want {
		t.Fatalf("dest %s, want %s", j.Dest, want)
	}
	if !strings.HasPrefix(j.ID, "qtune-mirror-vm1-vda-") || j.ID != JobID(policy.KnobMirror, jvda, j.Source, j.Dest) {
		t.Fatalf("job id %s", j.ID)
	}
	r.expect(j, state.JobPlanned)
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	if !j.DestCreated {
		t.Fatal("target not marked as qtune's")
	}
	r.f.set(j.ID, func(h *HVJob) { h.Offset = h.Length / 2 })
	r.clk.Advance(10 * time.Second)
	j = r.step(j.ID)
	if p := j.Progress; p.Percent() != 50 || p.Rate <= 0 || p.ETA != 10*time.Second {
		t.Fatalf("progress %+v (%.0f%%)", p, p.Percent())
	}
	r.f.set(j.ID, func(h *HVJob) { h.Offset, h.Ready, h.Status = h.Length, true, "ready" })
	j = r.step(j.ID)
	r.expect(j, state.JobPivoting)
	j = r.step(j.ID)
	r.expect(j, state.JobDone)
	if !j.Pivoted {
		t.Fatal("not marked pivoted")
	}
	if _, err := os.Stat(j.Source); err != nil {
		t.Fatalf("source gone: %v", err)
	}
	if _, err := os.Stat(j.Dest); err != nil {
		t.Fatalf("target gone after pivot: %v", err)
	}
	// The rule keeps matching: the disk is where it should be now.
	if p, err := r.plan(mirrorReq(r.fast())); err != nil || p.Result != state.ResultNoOp {
		t.Fatalf("second plan after the move: %s %s %v", p.Result, p.Reason, err)
	}
}

func TestJobPlanRefusals(t *testing.T) {
	r := newJobRig(t, Options{})
	refused := func(req Request, code tuning.RefusalCode) {
		t.Helper()
		_, err := r.plan(req)
		var ref *tuning.Refusal
		if !errors.As(err, &ref) || ref.Code != code {
			t.Fatalf("plan %+v: %v, want refusal %s", req, err, code)
		}
	}
	refused(mirrorReq("/elsewhere"), "mirror-dir")
	r.free = 100 << 20
	refused(mirrorReq(r.fast()), "space")
	r.free = 100 << 30
	os.WriteFile(filepath.Join(r.fast(), "disk.qcow2"), nil, 0o644)
	refused(mirrorReq(r.fast()), "exists")
	os.Remove(filepath.Join(r.fast(), "disk.qcow2"))
	r.f.foreign = []HVJob{{ID: "libvirt-copy", Type: "mirror", Status: "running"}}
	refused(mirrorReq(r.fast()), "busy")
	r.f.foreign = nil
	if p, err := r.plan(Request{Kind: policy.KnobStream, Target: jvda}); err != nil || p.Result != state.ResultNoOp {
		t.Fatalf("stream of a flat image: %s %v", p.Result, err)
	}
	img := r.f.images[jvda]
	r.f.images[jvda] = DiskImage{Path: img.Path, Format: "qcow2", Node: "n", Chain: []string{"/img/b0"}}
	refused(Request{Kind: policy.KnobStream, Target: jvda, Base: "/nowhere"}, "bounds")
	if p, err := r.plan(Request{Kind: policy.KnobStream, Target: jvda, Base: "/img/b0"}); err != nil || p.Result != state.ResultNoOp {
		t.Fatalf("stream down to the direct base: %s %v", p.Result, err)
	}
	r.f.images[jvda] = img
	if p, err := r.plan(Request{Kind: policy.KnobConvert, Target: jvda, Layout: policy.Layout{ClusterSize: 64 << 10}}); err != nil || p.Result != state.ResultNoOp {
		t.Fatalf("convert to the layout it has: %s %s %v", p.Result, p.Reason, err)
	}
	if p, err := r.m.Plan(context.Background(), mirrorReq(r.fast()), "policy", true); err != nil || p.Result != state.ResultDryRun {
		t.Fatalf("dry plan: %s %v", p.Result, err)
	}
	if jobs, _ := r.m.Jobs(); len(jobs) != 0 {
		t.Fatalf("refusals and dry runs left jobs: %+v", jobs)
	}
}

func TestJobStreamFlattens(t *testing.T) {
	r := newJobRig(t, Options{})
	img := r.f.images[jvda]
	img.Chain = []string{"/img/b1", "/img/b0"}
	r.f.images[jvda] = img
	j := r.mustPlan(Request{Kind: policy.KnobStream, Target: jvda, Speed: 1 << 20})
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	r.f.set(j.ID, func(h *HVJob) { h.Status = "concluded" })
	img.Chain = nil
	r.f.images[jvda] = img
	j = r.step(j.ID)
	r.expect(j, state.JobDone)
	if len(r.f.jobs) != 0 {
		t.Fatal("concluded job not dismissed")
	}
}

func TestJobTargetErrorCancelsCleanly(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.set(j.ID, func(h *HVJob) { h.Status, h.Error = "concluded", "No space left on device" })
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
	if !strings.Contains(j.Error, "No space left") {
		t.Fatalf("error %q", j.Error)
	}
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatalf("target qtune created still there: %v", err)
	}
	if r.f.images[jvda].Path != j.Source {
		t.Fatal("VM moved off its source")
	}
	// The rule keeps firing: the same job is not retried at once.
	if _, err := r.plan(mirrorReq(r.fast())); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("replan right after a failure: %v", err)
	}
}

func TestJobVMGoneTouchesNothing(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.gone["vm1"] = true
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
	if !strings.Contains(j.Error, "went away") {
		t.Fatalf("error %q", j.Error)
	}
	if _, err := os.Stat(j.Dest); err != nil {
		t.Fatalf("target removed after QEMU went away: %v", err)
	}
}

func TestJobCancelLeavesVMOnSource(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.set(j.ID, func(h *HVJob) { h.Ready, h.Status = true, "ready" })
	if _, err := r.m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	j = r.step(j.ID) // cancel sent
	j = r.step(j.ID)
	r.expect(j, state.JobCancelled)
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatal("cancelled copy's target kept")
	}
	if strings.Contains(strings.Join(r.f.calls, " "), "pivot") {
		t.Fatalf("a cancelled job pivoted: %v", r.f.calls)
	}
}

func TestJobNotConvergingGoesWriteBlockingThenGivesUp(t *testing.T) {
	r := newJobRig(t, Options{ConvergeTimeout: time.Minute, AllowWriteBlocking: true})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.clk.Advance(2 * time.Minute)
	j = r.step(j.ID) // cancel for restart
	j = r.step(j.ID)
	r.expect(j, state.JobPlanned)
	if !j.WriteBlocking {
		t.Fatal("not restarted write-blocking")
	}
	j = r.step(j.ID)
	r.expect(j, state.JobRunning)
	r.clk.Advance(2 * time.Minute)
	j = r.step(j.ID)
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
	if !strings.Contains(j.Error, "given up") {
		t.Fatalf("error %q", j.Error)
	}
}

func TestJobStartRetriesWithBackoff(t *testing.T) {
	r := newJobRig(t, Options{MaxAttempts: 2, Backoff: time.Minute})
	r.f.failOn["start"] = errors.New("boom")
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.expect(j, state.JobPlanned)
	if j.Attempts != 1 || !j.NextTry.Equal(r.clk.Now().Add(time.Minute)) {
		t.Fatalf("attempts %d next %v", j.Attempts, j.NextTry)
	}
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatal("failed start left its target")
	}
	j = r.step(j.ID)
	if j.Attempts != 1 {
		t.Fatal("retried before the backoff")
	}
	r.clk.Advance(time.Minute)
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
}

func TestJobBudgetAndRecovery(t *testing.T) {
	budget := &LocalBudget{Host: 1}
	r := newJobRig(t, Options{Budget: budget})
	other := state.Target{VM: "vm2", Disk: "vda"}
	img := r.f.images[jvda]
	img.Chain = []string{"/img/base"}
	r.f.images[other] = img
	a := r.mustPlan(mirrorReq(r.fast()))
	b := r.mustPlan(Request{Kind: policy.KnobStream, Target: other})
	a = r.step(a.ID)
	r.expect(a, state.JobRunning)
	b, _ = r.store.Job(b.ID)
	r.expect(b, state.JobPlanned)
	if !strings.Contains(b.Waiting, "host budget") {
		t.Fatalf("second job waits for %q", b.Waiting)
	}

	// A restart: a new manager over the same store adopts the running
	// job and holds its budget slot.
	budget2 := &LocalBudget{Host: 1}
	m2 := NewManager(r.f, r.store, Options{Budget: budget2, Clock: r.clk, MirrorDirs: []string{r.fast()}})
	m2.holdRunning()
	if ok, why := budget2.Acquire(&state.Job{ID: "x", Source: "/a/b"}, r.clk.Now()); ok {
		t.Fatal("budget not held for the adopted job")
	} else if !strings.Contains(why, "host budget") {
		t.Fatalf("why %q", why)
	}
	r.f.set(a.ID, func(h *HVJob) { h.Ready, h.Status = true, "ready" })
	m2.Step(context.Background())
	m2.Step(context.Background())
	a, _ = r.store.Job(a.ID)
	r.expect(a, state.JobDone)
	m2.Step(context.Background())
	b, _ = r.store.Job(b.ID)
	r.expect(b, state.JobRunning)
}

func TestJobStartingAfterCrash(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	// The agent died between writing "starting" (and creating the
	// target) and QEMU taking the job.
	j.State, j.DestCreated, j.Attempts = state.JobStarting, true, 1
	os.WriteFile(j.Dest, []byte("half"), 0o644)
	r.store.PutJob(j)
	j = r.step(j.ID)
	r.expect(j, state.JobPlanned)
	if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
		t.Fatal("half-made target kept")
	}
}

func TestJobVanishedBeforePivot(t *testing.T) {
	r := newJobRig(t, Options{})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.mu.Lock()
	delete(r.f.jobs, j.ID)
	r.f.mu.Unlock()
	j = r.step(j.ID)
	r.expect(j, state.JobFailed)
	if !strings.Contains(j.Error, "vanished") {
		t.Fatalf("error %q", j.Error)
	}
}

func TestJobReadyNoLongerWanted(t *testing.T) {
	r := newJobRig(t, Options{Wanted: func(*state.Job) bool { return false }})
	j := r.mustPlan(mirrorReq(r.fast()))
	j = r.step(j.ID)
	r.f.set(j.ID, func(h *HVJob) { h.Ready, h.Status = true, "ready" })
	j = r.step(j.ID)
	j = r.step(j.ID)
	if j.State != state.JobFailed && j.State != state.JobCancelled || j.Pivoted {
		t.Fatalf("state %s pivoted %v", j.State, j.Pivoted)
	}
	if r.f.images[jvda].Path != j.Source {
		t.Fatal("pivoted although the rule is gone")
	}
}
