package agent

import (
	"context"
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
func factsOptions(cfg config.Config, m *metrics) facts.Options {
	return facts.Options{QMPDir: cfg.QMPDir, LibvirtURI: cfg.LibvirtURI, LibvirtSocket: cfg.LibvirtSocket, LibvirtPidDir: cfg.LibvirtPidDir,
		Interval: cfg.Interval, CallTimeout: cfg.CallTimeout,
		ObserveCall: func(backend, call string, d time.Duration) {
			m.callDuration.WithLabelValues(backend, call).Observe(d.Seconds())
		}}
}

// openSource opens where the VMs are (a QMP directory, or libvirt) and
// the tuning backend over the connections facts hands over.
func openSource(ctx context.Context, cfg config.Config, log hclog.Logger, m *metrics) (source, error) {
	o := factsOptions(cfg, m)
	if cfg.QMPDir != "" {
		s := newQMPSource()
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
// backend given each VM's connection as facts makes it. Its samples
// carry latency histograms (histograms_qmp.go); turning them on and off
// is the executor's, as the histogram knob (histograms_knob.go).
type qmpSource struct {
	*facts.Source
	backend *tuning.QMPBackend
}

func newQMPSource() *qmpSource {
	return &qmpSource{backend: tuning.NewQMPBackend()}
}

func (s *qmpSource) Backend() tuning.Backend { return s.backend }
func (s *qmpSource) Tainted() []string       { return nil }

// VMConnected gives the backend the VM's new connection.
func (s *qmpSource) VMConnected(vm facts.VM) { s.backend.AddVM(vm.Name, vm.Monitor, vm.PID) }

func (s *qmpSource) VMGone(name string) { s.backend.RemoveVM(name) }

// backoff is the wait before the nth retry in a row of an orphaned knob.
func backoff(n int, jitter float64) time.Duration { return ibackoff.Wait(n, jitter) }
