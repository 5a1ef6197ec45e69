package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/facts"
	ibackoff "github.com/qtune/qtune/internal/backoff"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// vmState is a domain's state and its reason (libvirt's names).
type vmState = facts.VMState

// sourceError keys a sample's error that is the source's, not one VM's
// (the bulk call failed): it says nothing about which VMs exist.
const sourceError = facts.SourceError

// factsOptions are the agent's config as facts takes it; call durations
// go to the agent's metrics.
// watched says why a VM is needed every interval (rules, knobs, jobs).
func factsOptions(cfg config.Config, m *metrics, watched func(vm string) string) facts.Options {
	return facts.Options{QMPDir: cfg.QMPDir, LibvirtURI: cfg.LibvirtURI, LibvirtSocket: cfg.LibvirtSocket, LibvirtPidDir: cfg.LibvirtPidDir,
		Interval: cfg.Interval, CallTimeout: cfg.CallTimeout, IdleInterval: cfg.IdleInterval, Watched: watched,
		ObserveCall: func(backend, call string, d time.Duration) {
			m.callDuration.WithLabelValues(backend, call).Observe(d.Seconds())
		}}
}

// openSource opens where the VMs are (a QMP directory, or libvirt) and
// the tuning backend over the connections facts hands over.
func openSource(ctx context.Context, cfg config.Config, log hclog.Logger, m *metrics, watched func(vm string) string) (source, error) {
	o := factsOptions(cfg, m, watched)
	if cfg.QMPDir != "" {
		s := newQMPSource(cfg, log)
		o.QMP = s
		src, err := facts.Open(ctx, o, log)
		if err != nil {
			return nil, err
		}
		s.Source = src
		return s, nil
	}
	s := &libvirtSource{}
	o.OnLibvirt = func(v *virt.Libvirt) facts.LibvirtSink {
		s.backend = tuning.NewLibvirtBackend(v, tuning.LibvirtBackendOptions{AllowPassthrough: cfg.AllowPassthrough, PidDir: cfg.LibvirtPidDir, Log: log.Named("libvirt")})
		return s.backend
	}
	src, err := facts.Open(ctx, o, log)
	if err != nil {
		return nil, err
	}
	s.Source = src
	return s, nil
}

// libvirtSource is libvirt's domains as facts reads them, tuned through
// a backend over the same connection, which hears the domains' facts.
type libvirtSource struct {
	*facts.Source
	backend *tuning.LibvirtBackend
}

func (s *libvirtSource) Backend() tuning.Backend { return s.backend }
func (s *libvirtSource) Tainted() []string       { return s.backend.Tainted() }

// qmpSource is plain QEMU VMs as facts reads them, tuned through a
// backend given each VM's connection as facts makes it. It also keeps
// latency histograms on while they are wanted (histograms_qmp.go).
type qmpSource struct {
	*facts.Source
	backend  *tuning.QMPBackend
	log      hclog.Logger
	hists    []uint64    // histogram boundaries, ns
	histWant atomic.Bool // latency histograms wanted on every disk

	mu   sync.Mutex
	hist map[string]*histVM // by VM, for its current connection
}

func newQMPSource(cfg config.Config, log hclog.Logger) *qmpSource {
	hists := cfg.Histograms
	if len(hists) == 0 { // no boundaries would make the set a removal
		hists = config.Defaults().Histograms
	}
	return &qmpSource{backend: tuning.NewQMPBackend(), log: log.Named("qmp"), hists: hists, hist: map[string]*histVM{}}
}

func (s *qmpSource) Backend() tuning.Backend { return s.backend }
func (s *qmpSource) Tainted() []string       { return nil }

// VMConnected gives the backend the VM's new connection; what qtune
// turned on over the old one is not known on the new.
func (s *qmpSource) VMConnected(vm facts.VM) {
	s.mu.Lock()
	s.hist[vm.Name] = &histVM{}
	s.mu.Unlock()
	s.backend.AddVM(vm.Name, vm.Monitor, vm.PID)
}

// BeforeSample brings the VM's histograms in line, so that the sample
// shows them.
func (s *qmpSource) BeforeSample(ctx context.Context, vm facts.VM) {
	s.mu.Lock()
	hv := s.hist[vm.Name]
	s.mu.Unlock()
	if hv != nil {
		s.syncHistograms(ctx, vm, hv)
	}
}

func (s *qmpSource) VMGone(name string) {
	s.mu.Lock()
	delete(s.hist, name)
	s.mu.Unlock()
	s.backend.RemoveVM(name)
}

// backoff is the wait before the nth retry in a row of an orphaned knob.
func backoff(n int, jitter float64) time.Duration { return ibackoff.Wait(n, jitter) }
