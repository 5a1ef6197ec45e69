package facts

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// Defaults of Options.
const (
	DefaultInterval    = 10 * time.Second
	DefaultCallTimeout = 5 * time.Second
)

// Options say where the VMs are and how to read them.
type Options struct {
	// QMPSockets, when set, are the plain QEMU VMs read, whatever their
	// sockets are called; else QMPDir's *.sock sockets, watched; else
	// libvirt.
	QMPSockets []string
	QMPDir     string
	// LibvirtURI (qemu:///system, qemu+tls://...) or LibvirtSocket says
	// where libvirtd is; LibvirtPidDir holds its QEMU pid files, for the
	// process part of a domain's identity ("" leaves it out).
	LibvirtURI, LibvirtSocket, LibvirtPidDir string
	// Domains, when set, are the only libvirt domains read; each must
	// exist when the source opens.
	Domains []string
	// Interval is how often Sample is called (the bulk call's deadline
	// and the XML reads' wait follow it); CallTimeout bounds each call.
	// Zero: the defaults.
	Interval, CallTimeout time.Duration
	// IdleInterval, when above Interval, is how often a quiet VM is
	// sampled (cadence.go): one whose QEMU moves little I/O and that
	// Watched does not name. Zero: every VM every interval.
	IdleInterval time.Duration
	// Watched, when set, says why the caller needs a VM every interval
	// (a rule pending or firing on it, a knob held, a job running), or
	// "" when it does not. Called during Sample, from its goroutine.
	Watched func(vm string) string
	// Details makes each sample also read, per VM, what a report beyond
	// the counters needs (Details): under plain QEMU one more call per
	// VM (its run state).
	Details bool
	// ObserveCall, when set, hears the duration of every call to QEMU or
	// libvirt, by backend ("qmp", "libvirt") and call.
	ObserveCall func(backend, call string, d time.Duration)
	// QMP hears of plain QEMU VMs' connections; may be nil.
	QMP QMPHooks
	// OnLibvirt, when set, is given the libvirt connection once it is
	// open; what it returns hears what the domains' XML says (nil: no
	// one does).
	OnLibvirt func(v *virt.Libvirt) LibvirtSink
}

// VM is a plain QEMU VM as its runner connected to it: who it is, and
// the handles acting on it needs. A VM connected again (QEMU restarted,
// the connection lost) comes with new handles.
type VM struct {
	Name   string
	Socket string
	// ID is the QEMU process behind the socket; IDNote says why it is
	// not known ("" when it is).
	ID     sample.VMIdentity
	IDNote string
	// PID is the QEMU process (0 when unknown), whose command line holds
	// the -blockdev options.
	PID int
	// Monitor is the connection for commands that change the VM: each
	// one that is not a query makes the next sample read the disks
	// again. Its dynamic type also has Done and Subscribe, as *qmp.Conn.
	Monitor qmp.Executor
	// Block reads over the same connection, uncounted.
	Block *qmp.Block
}

// QMPHooks hear what a plain QEMU VM's runner does: VMConnected after
// each connection, on the VM's own runner goroutine; VMGone when its
// socket went away, after its runner stopped. Nothing is changed on a VM
// from here: latency histograms too are set through the executor, as
// tuning's histogram knob, and only read here.
type QMPHooks interface {
	VMConnected(vm VM)
	VMGone(name string)
}

// LibvirtSink hears what the domains' XML says: the throttles in force
// (read between ThrottleGeneration and NoteThrottles, so that a change
// seen in between wins), that they may have changed, block job events,
// and a domain's options to forget (a new QEMU, or the domain gone).
type LibvirtSink interface {
	ThrottleGeneration(domain string) uint64
	NoteThrottles(domain string, gen uint64, byDisk map[string]sample.Throttle)
	ThrottlesChanged(domain string)
	Forget(domain string)
	NoteJobEvent(domain, path string, state int32)
}

// OwnershipSink is a LibvirtSink that also hears what qtune's records a
// domain carries in its metadata (read from the XML the source reads
// anyway, on the first read of a domain and again once a migration
// brought it in) and the domain's migration events.
type OwnershipSink interface {
	CarriedRecords(domain string, o virt.Ownership)
	Migration(domain string, phase virt.MigrationPhase)
	// RecordsWritten: the domain's records were written (by a qtune, or
	// by hand), so that whoever compares them with its own does so again.
	RecordsWritten(domain string)
}

// impl is a kind of source: plain QEMU or libvirt.
type impl interface {
	name() string
	run(ctx context.Context)
	sample(ctx context.Context) ([]sample.Disk, map[string]error, []string)
	identity(vm string) (sample.VMIdentity, string)
	details(vm string) (Details, bool)
	cadences() map[string]CadenceInfo
}

// Source discovers VMs and samples their disks: the one reader of VM
// facts that the agent, qtune stats and qtune doctor share, so that they
// name, find and measure VMs the same way.
type Source struct {
	impl
	lv *libvirtSource // nil for plain QEMU
}

// SourceError is the key in Sample's errs of a failure of the whole
// sample (libvirt's bulk call), which says nothing of any one VM.
const SourceError = sourceError

// Open connects (libvirt) or prepares to watch (plain QEMU); Run then
// follows the VMs and Sample reads them.
func Open(ctx context.Context, o Options, log hclog.Logger) (*Source, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.IdleInterval < o.Interval {
		o.IdleInterval = o.Interval
	}
	switch {
	case len(o.QMPSockets) > 0:
		s := newQMPSource(o, log)
		s.sockets = o.QMPSockets
		return &Source{impl: s}, nil
	case o.QMPDir != "":
		if st, err := os.Stat(o.QMPDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("qmp_dir %s is not a directory", o.QMPDir)
		}
		return &Source{impl: newQMPSource(o, log)}, nil
	}
	cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
	defer cancel()
	s, err := newLibvirtSource(cctx, o, log)
	if err != nil {
		return nil, err
	}
	for _, name := range o.Domains {
		if _, err := s.v.LookupDomain(cctx, name); err != nil {
			s.v.Close()
			return nil, fmt.Errorf("domain %q: %w", name, err)
		}
	}
	s.only = o.Domains
	return &Source{impl: s, lv: s}, nil
}

// Name says where the VMs are: "qmp:DIR" or "libvirt:WHERE".
func (s *Source) Name() string { return s.name() }

// Run follows the VMs (socket directory, libvirt's events) until ctx
// ends, then closes every connection.
func (s *Source) Run(ctx context.Context) { s.run(ctx) }

// Sample reads every VM it can, each within its deadline; errs holds the
// VMs it could not read, by name (or the whole source's failure, keyed
// SourceError), gone the VMs that disappeared since the last call.
func (s *Source) Sample(ctx context.Context) (disks []sample.Disk, errs map[string]error, gone []string) {
	return s.sample(ctx)
}

// Identity is vm's identity as last connected (plain QEMU: its process)
// or listed (libvirt: its UUID, and its process when libvirt's pid file
// can be read), and why it is unknown when it could not be read.
func (s *Source) Identity(vm string) (sample.VMIdentity, string) { return s.identity(vm) }

// Details is what the last sample read of vm beyond its disks' samples,
// when Options.Details asked for it.
func (s *Source) Details(vm string) (Details, bool) { return s.details(vm) }

// Cadences is how often each VM is sampled and why, as of the last
// Sample.
func (s *Source) Cadences() map[string]CadenceInfo { return s.cadences() }

// Libvirt is the libvirt connection; nil for plain QEMU.
func (s *Source) Libvirt() *virt.Libvirt {
	if s.lv == nil {
		return nil
	}
	return s.lv.v
}

// Connected says whether the backend is reachable and how often it was
// reconnected (plain QEMU: always, never).
func (s *Source) Connected() (bool, uint64) {
	if s.lv == nil {
		return true, 0
	}
	return s.lv.v.Connected(), s.lv.v.Reconnects()
}

// VMsMigrate says whether a VM that stops running here may come back
// with its live changes (a libvirt domain migrated away and back).
func (s *Source) VMsMigrate() bool { return s.lv != nil }

// DomainStates is each sampled domain's state as of the last sample;
// nil for plain QEMU.
func (s *Source) DomainStates() map[string]VMState {
	if s.lv == nil {
		return nil
	}
	return s.lv.DomainStates()
}

// Sampler is a Source that runs on its own, for tools that read disks
// without tuning them (qtune stats, qtune doctor). Rates come from
// sample.Rater, as the agent's do.
type Sampler struct {
	*Source
	cancel context.CancelFunc
	done   chan struct{}
}

// OpenSampler opens a Source and runs it until Close.
func OpenSampler(ctx context.Context, o Options, log hclog.Logger) (*Sampler, error) {
	src, err := Open(ctx, o, log)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{Source: src, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		src.Run(rctx)
	}()
	return s, nil
}

// Close stops watching and closes every connection.
func (s *Sampler) Close() {
	s.cancel()
	<-s.done
}
