package agent

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/sample"
)

// SamplerOptions says which VMs a Sampler reads and how.
type SamplerOptions struct {
	// Config is where the VMs are, as the agent's configuration says it:
	// QMPDir, or the libvirt connection (LibvirtURI, LibvirtSocket);
	// Interval and CallTimeout set the deadlines.
	Config
	// QMPSockets, when set, are the plain QEMU VMs read instead of
	// QMPDir's, whatever their sockets are called.
	QMPSockets []string
	// Domains, when set, are the only libvirt domains read; each must
	// exist when the Sampler opens.
	Domains []string
}

// Sampler discovers and samples VMs exactly as the agent does — the same
// sources, VM names, deadlines, QEMU version check and facts — for tools
// that read disks without tuning them (qtune stats). Rates come from
// sample.Rater, as the agent's do.
type Sampler struct {
	src    source
	cancel context.CancelFunc
	done   chan struct{}
}

// OpenSampler connects (libvirt) or starts watching (plain QEMU) and
// returns a Sampler; Close stops it.
func OpenSampler(ctx context.Context, o SamplerOptions, log hclog.Logger) (*Sampler, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	def := Defaults()
	if o.Interval <= 0 {
		o.Interval = def.Interval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = def.CallTimeout
	}
	// Its metrics go nowhere: a Sampler has no listener.
	src, err := openSource(ctx, o, log, newMetrics())
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{src: src, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		src.Run(rctx)
	}()
	return s, nil
}

// Sample reads every VM it can, each within its deadline; errs holds the
// VMs it could not read, by name (or the whole source's failure, keyed
// SourceError), gone the VMs that disappeared since the last call.
func (s *Sampler) Sample(ctx context.Context) (disks []sample.Disk, errs map[string]error, gone []string) {
	return s.src.Sample(ctx)
}

// SourceError is the key in Sample's errs of a failure of the whole
// sample (libvirt's bulk call), which says nothing of any one VM.
const SourceError = sourceError

// Close stops watching and closes every connection.
func (s *Sampler) Close() {
	s.cancel()
	<-s.done
}

// openSource opens where the VMs are: given sockets, a QMP directory, or
// libvirt.
func openSource(ctx context.Context, o SamplerOptions, log hclog.Logger, m *metrics) (source, error) {
	switch {
	case len(o.QMPSockets) > 0:
		s := newQMPSource(o.Config, log, m)
		s.sockets = o.QMPSockets
		return s, nil
	case o.QMPDir != "":
		if st, err := os.Stat(o.QMPDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("qmp_dir %s is not a directory", o.QMPDir)
		}
		return newQMPSource(o.Config, log, m), nil
	}
	cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
	defer cancel()
	s, err := newLibvirtSource(cctx, o.Config, log, m)
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
	return s, nil
}
