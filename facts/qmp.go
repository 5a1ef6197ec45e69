package facts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

// ErrBusy is a runner still working on its previous sample: its VM is
// hung or slow, and waiting for it would delay everyone.
var ErrBusy = errors.New("previous sample still running (VM hung or slow)")

// qmpSource watches a directory of QMP sockets (*.sock; other files are
// ignored) and keeps one runner per socket; or, given sockets, reads just
// those, whatever their names (qtune stats --qmp).
type qmpSource struct {
	dir         string
	sockets     []string // when set, these instead of dir's
	timeout     time.Duration
	wantDetails bool // read each VM's Details with its sample
	log         hclog.Logger
	hooks       QMPHooks // nil: no one listens
	observe     func(backend, call string, d time.Duration)
	cad         *cadence

	mu      sync.Mutex
	runners map[string]*qmpRunner
	gone    []string // VMs removed since the last Sample
}

func newQMPSource(o Options, log hclog.Logger) *qmpSource {
	if o.ObserveCall == nil {
		o.ObserveCall = func(string, string, time.Duration) {}
	}
	return &qmpSource{dir: o.QMPDir, timeout: o.CallTimeout, wantDetails: o.Details, log: log.Named("qmp"),
		hooks: o.QMP, observe: o.ObserveCall, runners: map[string]*qmpRunner{}, cad: newCadence(o)}
}

func (s *qmpSource) cadences() map[string]CadenceInfo { return s.cad.infos() }

func (s *qmpSource) name() string {
	if len(s.sockets) > 0 {
		return "qmp:" + strings.Join(s.sockets, ",")
	}
	return "qmp:" + s.dir
}

// run watches the directory until ctx ends; Sample also reconciles, so a
// missed notification costs at most one interval.
func (s *qmpSource) run(ctx context.Context) {
	if len(s.sockets) > 0 { // nothing to watch
		s.reconcile()
		<-ctx.Done()
		s.stopAll()
		return
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("cannot watch the QMP socket directory; relying on rescans", "dir", s.dir, "error", err.Error())
		<-ctx.Done()
		s.stopAll()
		return
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		s.log.Error("cannot watch the QMP socket directory; relying on rescans", "dir", s.dir, "error", err.Error())
	}
	s.reconcile()
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return
		case ev, ok := <-w.Events:
			if !ok {
				<-ctx.Done()
				s.stopAll()
				return
			}
			if strings.HasSuffix(ev.Name, ".sock") {
				s.reconcile()
			}
		case err, ok := <-w.Errors:
			if ok {
				s.log.Warn("watching the QMP socket directory", "error", err.Error())
			}
		}
	}
}

// reconcile makes the runners match the sockets present.
func (s *qmpSource) reconcile() {
	socks := s.sockets
	if len(socks) == 0 {
		socks, _ = qmp.Sockets(s.dir)
	}
	want := map[string]string{}
	for _, p := range socks {
		want[qmp.VMName(p)] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.runners {
		if _, ok := want[name]; !ok {
			r.stop()
			delete(s.runners, name)
			if s.hooks != nil {
				s.hooks.VMGone(name)
			}
			s.gone = append(s.gone, name)
			s.log.Info("VM gone", "vm", name)
		}
	}
	for name, path := range want {
		if _, ok := s.runners[name]; !ok {
			r := startQMPRunner(name, path, s)
			s.runners[name] = r
			s.log.Info("VM found", "vm", name, "socket", path)
		}
	}
}

func (s *qmpSource) stopAll() {
	s.mu.Lock()
	rs := s.runners
	s.runners = map[string]*qmpRunner{}
	s.mu.Unlock()
	// Stop every runner first, then wait for them all.
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		<-r.done
	}
}

// identity is the QEMU process a VM's runner last connected to.
func (s *qmpSource) identity(vm string) (sample.VMIdentity, string) {
	s.mu.Lock()
	r := s.runners[vm]
	s.mu.Unlock()
	if r == nil {
		return sample.VMIdentity{}, ""
	}
	r.idMu.Lock()
	defer r.idMu.Unlock()
	return r.id, r.idNote
}

// details is what the runner's last sample read beyond the disks.
func (s *qmpSource) details(vm string) (Details, bool) {
	s.mu.Lock()
	r := s.runners[vm]
	s.mu.Unlock()
	if r == nil {
		return Details{}, false
	}
	r.idMu.Lock()
	defer r.idMu.Unlock()
	return r.details, r.details.Disks != nil
}

// sample asks every runner at once and waits at most the call timeout.
func (s *qmpSource) sample(ctx context.Context) ([]sample.Disk, map[string]error, []string) {
	s.reconcile()
	s.mu.Lock()
	rs := make([]*qmpRunner, 0, len(s.runners))
	for _, r := range s.runners {
		rs = append(rs, r)
	}
	gone := s.gone
	s.gone = nil
	s.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].name < rs[j].name })
	rs = s.due(rs)
	// Each runner's disks in its own slot, joined in VM order once all
	// are in: one allocation of the whole sample, and a stable order.
	results := make([]sampleResult, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].disks, results[i].err = r.sample(ctx, s.timeout)
		}()
	}
	wg.Wait()
	n := 0
	for _, res := range results {
		n += len(res.disks)
	}
	disks := make([]sample.Disk, 0, n)
	errs := map[string]error{}
	for i, res := range results {
		if res.err != nil {
			errs[rs[i].name] = res.err
			continue
		}
		s.cad.read(rs[i].name)
		disks = append(disks, res.disks...)
	}
	return disks, errs, gone
}

// due keeps the runners whose VM is due this cycle: a quiet VM's
// query-blockstats is asked only every idle interval.
func (s *qmpSource) due(rs []*qmpRunner) []*qmpRunner {
	vms := make([]dueVM, len(rs))
	for i, r := range rs {
		r.idMu.Lock()
		vms[i] = dueVM{name: r.name, pid: r.id.PID}
		r.idMu.Unlock()
	}
	due := s.cad.due(s.cad.now(), vms)
	if len(due) == len(rs) {
		return rs
	}
	out := rs[:0:0]
	for _, r := range rs {
		if due[r.name] {
			out = append(out, r)
		}
	}
	return out
}

// qmpRunner owns one VM's QMP connection. Sampling happens on its own
// goroutine, so a hung VM holds up nobody but itself.
type qmpRunner struct {
	name, path string
	src        *qmpSource
	req        chan chan sampleResult
	busy       atomic.Bool // working on a request (false while it waits for one, or is still starting)
	cancel     context.CancelFunc
	done       chan struct{}

	idMu    sync.Mutex // guards the identity of the QEMU last connected, and its last details
	id      sample.VMIdentity
	idNote  string
	details Details
}

type sampleResult struct {
	disks []sample.Disk
	err   error
}

func startQMPRunner(name, path string, s *qmpSource) *qmpRunner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &qmpRunner{name: name, path: path, src: s, req: make(chan chan sampleResult), cancel: cancel, done: make(chan struct{})}
	go r.loop(ctx)
	return r
}

func (r *qmpRunner) stop() { r.cancel(); <-r.done }

// sample hands the runner a request, or reports it busy.
func (r *qmpRunner) sample(ctx context.Context, timeout time.Duration) ([]sample.Disk, error) {
	if r.busy.Load() {
		return nil, ErrBusy
	}
	reply := make(chan sampleResult, 1)
	t := time.NewTimer(timeout + 500*time.Millisecond)
	defer t.Stop()
	// Not busy: the runner takes the request as soon as its goroutine
	// reaches its select (a new runner may not have yet).
	select {
	case r.req <- reply:
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-reply:
		return res.disks, res.err
	case <-t.C:
		return nil, fmt.Errorf("no sample within %v", timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *qmpRunner) loop(ctx context.Context) {
	defer close(r.done)
	var conn *qmp.Conn
	var vm *qmpVM
	var gate dialGate // backs off from a socket that does not answer as QEMU
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		r.busy.Store(false)
		select {
		case <-ctx.Done():
			return
		case reply := <-r.req:
			r.busy.Store(true)
			if conn != nil {
				select {
				case <-conn.Done():
					conn.Close()
					conn = nil
				default:
				}
			}
			if conn == nil {
				sock := socketInode(r.path)
				if ok, err := gate.allow(time.Now(), sock); !ok {
					reply <- sampleResult{err: err}
					continue
				}
				var err error
				conn, vm, err = r.connect(ctx)
				if err != nil {
					gate.failed(time.Now(), sock, err)
					reply <- sampleResult{err: err}
					continue
				}
				gate.succeeded()
			}
			cctx, cancel := context.WithTimeout(ctx, r.src.timeout)
			start := time.Now()
			if vm.changed() {
				vm.sampler.Invalidate()
			}
			disks, health, err := vm.sampler.Sample(cctx, r.name, qmp.SampleOptions{L2CacheSize: vm.l2})
			if err == nil && r.src.wantDetails {
				err = r.readDetails(cctx, vm, disks, health)
			}
			cancel()
			r.src.observe("qmp", "sample", time.Since(start))
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				// A connection whose reply never came may be wedged; start afresh.
				conn.Close()
				conn = nil
			}
			reply <- sampleResult{disks, err}
		}
	}
}

// qmpVM is what a runner keeps of its VM while connected: the sampler
// with its cached query-block, what says that cache is out of date, and
// the -blockdev options of its command line.
type qmpVM struct {
	handle  VM
	sampler *qmp.DiskSampler
	events  *qmp.Subscription
	changes atomic.Uint64 // commands sent through the handle's Monitor that were not queries
	seen    uint64
	opts    map[string]qmp.NodeOptions
	l2      map[string]uint64
}

// changed reports whether anything may have changed the disks since the
// last call: a command qtune sent, or any QEMU event (a block job,
// an I/O error, a pause, a device removed...).
func (v *qmpVM) changed() bool {
	out := false
	if n := v.changes.Load(); n != v.seen {
		v.seen, out = n, true
	}
	for {
		select {
		case _, ok := <-v.events.C():
			if !ok {
				return out
			}
			out = true
		default:
			return out
		}
	}
}

// changeCounter is the connection as those changing the VM see it: each
// command that is not a query counts as a change once it has been
// answered.
type changeCounter struct {
	*qmp.Conn
	n *atomic.Uint64
}

func (c changeCounter) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if !strings.HasPrefix(command, "query-") {
		defer c.n.Add(1)
	}
	return c.Conn.Execute(ctx, command, args)
}

func (r *qmpRunner) connect(ctx context.Context) (*qmp.Conn, *qmpVM, error) {
	cctx, cancel := context.WithTimeout(ctx, r.src.timeout)
	defer cancel()
	c, err := qmp.DialVM(cctx, r.path, qmp.WithLogger(r.src.log), qmp.WithCallTimeout(r.src.timeout))
	if err != nil {
		return nil, nil, err
	}
	b := qmp.NewBlock(c)
	vm := &qmpVM{sampler: qmp.NewDiskSampler(b), events: c.Subscribe(64)}
	if pid := c.PeerPID(); pid > 0 {
		if opts, err := qmp.CommandLineBlockdevs(pid); len(opts) > 0 || err == nil {
			vm.opts, vm.l2 = opts, qmp.L2CacheSizes(opts)
		}
	}
	id, note := qemuIdentity(r.path, c.PeerPID())
	r.idMu.Lock()
	r.id, r.idNote = id, note
	r.idMu.Unlock()
	vm.handle = VM{Name: r.name, Socket: r.path, ID: id, IDNote: note, PID: c.PeerPID(),
		Monitor: changeCounter{c, &vm.changes}, Block: b}
	if r.src.hooks != nil {
		r.src.hooks.VMConnected(vm.handle)
	}
	r.src.log.Info("connected", "vm", r.name, "qemu", c.Greeting().Version.String())
	return c, vm, nil
}

// qemuIdentity is the identity of the plain QEMU VM behind the socket at
// path, served by process pid (0: unknown).
func qemuIdentity(path string, pid int) (sample.VMIdentity, string) {
	id := sample.VMIdentity{Socket: path}
	if pid <= 0 {
		return id, "the process serving the QMP socket is unknown (no SO_PEERCRED)"
	}
	st, err := qmp.StartOf(pid)
	if err != nil {
		return id, "the QEMU process's start cannot be read: " + err.Error()
	}
	id.PID, id.Boot, id.StartTicks, id.Started = pid, st.Boot, st.Ticks, st.Started
	return id, ""
}
