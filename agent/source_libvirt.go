package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/tuning"
)

// libvirtSource reads every running domain with one bulk stats call per
// cycle, plus the facts bulk stats lack (format, cache mode, backing
// depth from the XML, refreshed on lifecycle events and every few
// minutes; throttles every cycle, so drift is seen). Discovery is the
// bulk call itself; lifecycle events only make forgetting prompt.
type libvirtSource struct {
	v       *qmp.Libvirt
	timeout time.Duration
	log     hclog.Logger
	backend *tuning.LibvirtBackend
	m       *metrics

	mu    sync.Mutex
	facts map[string]domainFacts
	known map[string]bool
	gone  []string
}

type domainFacts struct {
	disks map[string]qmp.DomainDisk
	qcow2 map[string]hoststat.Qcow2Header // by target, for local qcow2 images
	at    time.Time
}

const factsMaxAge = 5 * time.Minute

func newLibvirtSource(ctx context.Context, cfg Config, log hclog.Logger, m *metrics) (*libvirtSource, error) {
	log = log.Named("libvirt")
	v, err := qmp.DialLibvirt(ctx, qmp.LibvirtOptions{URI: cfg.LibvirtURI, Socket: cfg.LibvirtSocket, CallTimeout: cfg.CallTimeout, Log: log})
	if err != nil {
		return nil, err
	}
	return &libvirtSource{
		v: v, timeout: cfg.CallTimeout, log: log, m: m,
		backend: tuning.NewLibvirtBackend(v, tuning.LibvirtBackendOptions{AllowPassthrough: cfg.AllowPassthrough, PidDir: cfg.LibvirtPidDir, Log: log}),
		facts:   map[string]domainFacts{}, known: map[string]bool{},
	}, nil
}

func (s *libvirtSource) Name() string            { return "libvirt:" + s.v.Where() }
func (s *libvirtSource) Backend() tuning.Backend { return s.backend }
func (s *libvirtSource) Tainted() []string       { return s.backend.Tainted() }
func (s *libvirtSource) Connected() (bool, uint64) {
	return s.v.Connected(), s.v.Reconnects()
}

// Run follows lifecycle events until ctx ends, then closes the connection.
func (s *libvirtSource) Run(ctx context.Context) {
	evs := s.v.SubscribeDomainEvents(ctx, 256)
	for ev := range evs {
		if ev.Kind == "block-job" {
			s.backend.NoteJobEvent(ev.Domain, ev.Path, ev.JobState)
			continue
		}
		if ev.Kind != "lifecycle" {
			continue
		}
		s.mu.Lock()
		delete(s.facts, ev.Domain) // started, stopped, redefined: read the XML again
		s.mu.Unlock()
		s.backend.Forget(ev.Domain)
	}
	s.v.Close()
}

func (s *libvirtSource) Sample(ctx context.Context) ([]sample.Disk, map[string]error, []string) {
	errs := map[string]error{}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	start := time.Now()
	byDom, err := s.v.BlockStats(cctx)
	cancel()
	s.m.callDuration.WithLabelValues("libvirt", "get_all_domain_stats").Observe(time.Since(start).Seconds())
	if err != nil {
		errs["libvirt"] = err
		return nil, errs, nil
	}
	var out []sample.Disk
	for dom, disks := range byDom {
		facts, err := s.domainFacts(ctx, dom)
		if err != nil {
			errs[dom] = err
			continue
		}
		for i := range disks {
			s.fill(ctx, &disks[i], facts)
		}
		out = append(out, disks...)
	}
	s.mu.Lock()
	for dom := range s.known {
		if _, ok := byDom[dom]; !ok {
			delete(s.known, dom)
			delete(s.facts, dom)
			s.backend.Forget(dom)
			s.gone = append(s.gone, dom)
		}
	}
	for dom := range byDom {
		s.known[dom] = true
	}
	gone := s.gone
	s.gone = nil
	s.mu.Unlock()
	return out, errs, gone
}

func (s *libvirtSource) domainFacts(ctx context.Context, dom string) (domainFacts, error) {
	s.mu.Lock()
	f, ok := s.facts[dom]
	s.mu.Unlock()
	if ok && time.Since(f.at) < factsMaxAge {
		return f, nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	doc, err := s.v.DomainXML(cctx, dom, false)
	if err != nil {
		return f, err
	}
	disks, err := qmp.ParseDomainDisks(doc)
	if err != nil {
		return f, err
	}
	f = domainFacts{disks: map[string]qmp.DomainDisk{}, qcow2: map[string]hoststat.Qcow2Header{}, at: time.Now()}
	for _, d := range disks {
		f.disks[d.Target] = d
		if d.Format == "qcow2" && strings.HasPrefix(d.Source, "/") {
			if h, err := hoststat.ReadQcow2Header(d.Source); err == nil {
				f.qcow2[d.Target] = h
			}
		}
	}
	s.mu.Lock()
	s.facts[dom] = f
	s.mu.Unlock()
	return f, nil
}

func (s *libvirtSource) fill(ctx context.Context, d *sample.Disk, f domainFacts) {
	x, ok := f.disks[d.Name]
	if !ok {
		return
	}
	d.Format, d.BackingDepth, d.QOMPath = x.Format, x.BackingDepth, x.QOMPath()
	d.CacheDirect, d.CacheNoFlush = x.CacheFlags()
	if h, ok := f.qcow2[d.Name]; ok {
		d.ClusterSize, d.ExtendedL2 = h.ClusterSize, h.ExtendedL2
		// <metadata_cache><max_size> becomes QEMU's cache-size, which the
		// L2 cache takes nearly all of; without it QEMU's default holds.
		d.L2CacheSize = min(d.L2Needed(), qmp.DefaultL2CacheMax)
		if x.MetadataCacheMax > 0 {
			d.L2CacheSize = min(d.L2Needed(), x.MetadataCacheMax)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	if t, err := s.v.BlockIOTune(cctx, d.VM, d.Name, false); err == nil {
		d.Throttle = t
	}
	s.m.callDuration.WithLabelValues("libvirt", "get_block_io_tune").Observe(time.Since(start).Seconds())
}
