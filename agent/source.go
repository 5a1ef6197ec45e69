package agent

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/facts"
	ibackoff "github.com/qtune/qtune/internal/backoff"
	"github.com/qtune/qtune/qmp"
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
		s := newQMPSource(log)
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
		s.carried = newCarriedRecords(s.backend)
		return s.carried
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

	capsMu      sync.Mutex
	caps        []string
	capsAt      time.Time
	capsReading bool

	carried *carriedRecords // what the domains carry in, and their migrations
}

// capsEvery is how often libvirt's capabilities are read again: a
// libvirt upgraded under a running agent, domains given <statistics>.
const capsEvery = 10 * time.Minute

// BackendCapabilities is what libvirt was last found to offer; a read
// older than capsEvery is refreshed in the background, so that status
// never waits on libvirt.
func (s *libvirtSource) BackendCapabilities() []string {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	if time.Since(s.capsAt) > capsEvery && !s.capsReading {
		s.capsReading = true
		go s.readCapabilities()
	}
	return s.caps
}

func (s *libvirtSource) readCapabilities() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.backend.Libvirt().Capabilities(ctx)
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	s.capsReading = false
	if err != nil {
		s.caps = []string{"unknown: " + err.Error()}
		s.capsAt = time.Now().Add(-capsEvery + time.Minute) // again in a minute
		return
	}
	s.caps, s.capsAt = c.Names(), time.Now()
}

func (s *libvirtSource) Backend() tuning.Backend { return s.backend }
func (s *libvirtSource) Tainted() []string       { return s.backend.Tainted() }

// qmpSource is plain QEMU VMs as facts reads them, tuned through a
// backend given each VM's connection as facts makes it. Its samples
// carry latency histograms (histograms_qmp.go); turning them on and off
// is the executor's, as the histogram knob (histograms_knob.go).
type qmpSource struct {
	*facts.Source
	backend *tuning.QMPBackend
	log     hclog.Logger
}

func newQMPSource(log hclog.Logger) *qmpSource {
	return &qmpSource{backend: tuning.NewQMPBackend(), log: log.Named("qmp")}
}

func (s *qmpSource) Backend() tuning.Backend { return s.backend }
func (s *qmpSource) Tainted() []string       { return nil }

// VMConnected gives the backend the VM's new connection.
func (s *qmpSource) VMConnected(vm facts.VM) {
	s.backend.AddVM(vm.Name, vm.Monitor, vm.PID)
	s.readCapabilities(vm.Name)
}

func (s *qmpSource) VMGone(name string) { s.backend.RemoveVM(name) }

// readCapabilities reads what the VM's QEMU can do, once per connection:
// it decides which commands are sent to it.
func (s *qmpSource) readCapabilities(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), capsTimeout)
	defer cancel()
	s.vmCapabilities(ctx, name)
}

// capsTimeout bounds the schema read (about 200 KB from QEMU).
const capsTimeout = 10 * time.Second

// OffersHistograms reports whether the VM's QEMU has latency histograms
// (block-latency-histogram-set), or is not known yet not to.
func (s *qmpSource) OffersHistograms(vm string) bool {
	h, err := s.backend.VM(vm)
	if err != nil {
		return true
	}
	c, known := h.KnownCapabilities()
	return !known || c.LatencyHistograms
}

// vmCapabilities reads (once per connection) what a VM's QEMU offers.
func (s *qmpSource) vmCapabilities(ctx context.Context, name string) (qmp.Capabilities, bool) {
	h, err := s.backend.VM(name)
	if err != nil {
		return qmp.Capabilities{}, false
	}
	if c, ok := h.KnownCapabilities(); ok {
		return c, true
	}
	c, err := h.Capabilities(ctx)
	if err != nil {
		s.log.Warn("cannot read what QEMU offers; assuming QEMU 7.2's commands", "vm", name, "error", err.Error())
		return qmp.Capabilities{}, false
	}
	if !c.LatencyHistograms {
		s.log.Info("QEMU has no latency histograms (block-latency-histogram-set): none are turned on", "vm", name)
	}
	return c, true
}

// Capabilities says, per VM, what its QEMU was found to offer.
func (s *qmpSource) Capabilities() map[string][]string {
	out := map[string][]string{}
	for _, name := range s.backend.VMs() {
		if h, err := s.backend.VM(name); err == nil {
			if c, ok := h.KnownCapabilities(); ok {
				out[name] = c.Names()
			}
		}
	}
	return out
}

// backoff is the wait before the nth retry in a row of an orphaned knob.
func backoff(n int, jitter float64) time.Duration { return ibackoff.Wait(n, jitter) }
