package facts

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// libvirtAPI is what the libvirt source asks of the daemon.
type libvirtAPI interface {
	DomainStats(ctx context.Context, names ...string) (map[string]virt.DomainStat, error)
	Domains(ctx context.Context) ([]virt.DomainInfo, error)
	DomainStatsOf(ctx context.Context, doms []virt.DomainInfo) (map[string]virt.DomainStat, error)
	DomainXML(ctx context.Context, domain string, inactive bool) (string, error)
	DiskErrors(ctx context.Context, domain string) (map[string]string, error)
}

// libvirtSource reads the counters and state of every active domain with
// one bulk stats call per cycle. What changes rarely — disks, throttles
// in force, cache mode, backing chain — comes from the domain XML, read
// when a domain is first seen, again when libvirt says something changed
// (lifecycle, device added or removed, block job, and the tunable event
// that any blkdeviotune emits: drift by another tool is seen at the next
// cycle), and every few minutes as a safety net. Nothing is asked per
// disk per cycle.
//
// XML reads run beside the cycle, a few at a time, each with its own
// deadline; a cycle waits for them only a short while, so a domain whose
// QEMU hangs costs itself, not the others.
type libvirtSource struct {
	v        *virt.Libvirt // nil in tests
	api      libvirtAPI
	sink     LibvirtSink
	owners   OwnershipSink // nil when the sink does not hear records
	timeout  time.Duration
	interval time.Duration
	log      hclog.Logger
	observe  func(backend, call string, d time.Duration)
	sem      chan struct{} // bounds concurrent XML reads
	pidDir   string        // libvirt's QEMU pid files, for the process part of an identity
	only     []string      // when set, the only domains read (qtune stats --domain)

	mu     sync.Mutex
	facts  map[string]*domainFacts
	known  map[string]bool
	gone   []string
	states map[string]VMState
	uuids  map[string]string // domain: its UUID, as of the last cycle
	pids   map[string]domainPID
	cad    *cadence
	disks  int // disks in the last bulk answer, for its deadline
}

// VMState is a domain's state and its reason (libvirt's names).
type VMState struct{ State, Reason string }

// domainFacts is what one domain's XML said.
type domainFacts struct {
	disks map[string]virt.DomainDisk
	qcow2 map[string]hoststat.Qcow2Header // by target, for local qcow2 images
	// ioErrs is each disk's I/O error (nospace, failed) as of the read;
	// nil when it could not be read: io-status is then unknown.
	ioErrs map[string]string
	ok     bool // a read has succeeded
	// carried: the next read hands the domain's records to the sink
	// (first sight, or a migration brought the domain in).
	carried bool
	err     error     // the last read's error
	due     time.Time // the slow re-read
	stale   bool      // an event said it changed since the read began
	// reading is closed when the read under way ends; nil when idle.
	reading chan struct{}
}

const (
	factsMaxAge      = 5 * time.Minute
	factsReaders     = 4                      // XML reads at once
	bulkPerDisk      = 2 * time.Millisecond   // added to the bulk call's deadline per disk
	factsWaitPerCall = 500 * time.Millisecond // longest a cycle waits for XML reads
)

func newLibvirtSource(ctx context.Context, o Options, log hclog.Logger) (*libvirtSource, error) {
	log = log.Named("libvirt")
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{URI: o.LibvirtURI, Socket: o.LibvirtSocket, CallTimeout: o.CallTimeout, Log: log})
	if err != nil {
		return nil, err
	}
	var sink LibvirtSink = noSink{}
	if o.OnLibvirt != nil {
		if sink = o.OnLibvirt(v); sink == nil {
			sink = noSink{}
		}
	}
	owners, _ := sink.(OwnershipSink)
	if !v.SeesTunableEvents() {
		// Over a remote URI a change by another tool would go unseen
		// until the next slow re-read: owned throttles are read from
		// libvirt then.
		sink = liveThrottles{sink}
	}
	s := newLibvirtSourceWith(v, sink, o, log)
	s.v, s.owners = v, owners
	return s, nil
}

// liveThrottles keeps the sink reading throttles from libvirt.
type liveThrottles struct{ LibvirtSink }

func (liveThrottles) NoteThrottles(string, uint64, map[string]sample.Throttle) {}

// noSink is no one listening.
type noSink struct{}

func (noSink) ThrottleGeneration(string) uint64                         { return 0 }
func (noSink) NoteThrottles(string, uint64, map[string]sample.Throttle) {}
func (noSink) ThrottlesChanged(string)                                  {}
func (noSink) Forget(string)                                            {}
func (noSink) NoteJobEvent(string, string, int32)                       {}

func newLibvirtSourceWith(api libvirtAPI, sink LibvirtSink, o Options, log hclog.Logger) *libvirtSource {
	if o.ObserveCall == nil {
		o.ObserveCall = func(string, string, time.Duration) {}
	}
	return &libvirtSource{api: api, sink: sink, timeout: o.CallTimeout, interval: o.Interval, log: log, observe: o.ObserveCall, pidDir: o.LibvirtPidDir,
		sem: make(chan struct{}, factsReaders), facts: map[string]*domainFacts{}, known: map[string]bool{}, states: map[string]VMState{},
		pids: map[string]domainPID{}, cad: newCadence(o)}
}

func (s *libvirtSource) name() string { return "libvirt:" + s.v.Where() }

// run follows domain events until ctx ends, then closes the connection.
func (s *libvirtSource) run(ctx context.Context) {
	for ev := range s.v.SubscribeDomainEvents(ctx, 1024) {
		s.event(ev)
	}
	s.v.Close()
}

// event marks what an event may have changed for the next XML read.
func (s *libvirtSource) event(ev virt.DomainEvent) {
	s.log.Debug("domain event", "vm", ev.Domain, "kind", ev.Kind, "disk", ev.Disk)
	switch ev.Kind {
	case "reconnected": // events may have been missed while down
		s.mu.Lock()
		doms := make([]string, 0, len(s.facts))
		for dom, f := range s.facts {
			f.stale = true
			doms = append(doms, dom)
		}
		s.mu.Unlock()
		for _, dom := range doms {
			s.sink.ThrottlesChanged(dom)
		}
		return
	case "block-job":
		s.sink.NoteJobEvent(ev.Domain, ev.Path, ev.JobState)
	case "lifecycle": // started, stopped, redefined: a new QEMU has new options
		s.sink.Forget(ev.Domain)
		if ph := ev.Migration(); ph != virt.MigrationNone {
			s.migration(ev.Domain, ph)
		}
	case "tunable":
		s.sink.ThrottlesChanged(ev.Domain)
	case "records": // nothing the XML's facts depend on
		if s.owners != nil {
			s.owners.RecordsWritten(ev.Domain)
		}
		return
	}
	s.mu.Lock()
	if f := s.facts[ev.Domain]; f != nil {
		f.stale = true
	}
	s.mu.Unlock()
}

// migration hands a migration event to the sink; a domain that arrived
// is read again for the records it carried.
func (s *libvirtSource) migration(dom string, ph virt.MigrationPhase) {
	if s.owners == nil {
		return
	}
	if ph == virt.MigrationResumed {
		s.mu.Lock()
		if f := s.facts[dom]; f != nil {
			f.carried = true
		}
		s.mu.Unlock()
	}
	s.owners.Migration(dom, ph)
}

// DomainStates is each sampled domain's state as of the last cycle.
func (s *libvirtSource) DomainStates() map[string]VMState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states
}

// identity is a domain's UUID as the last cycle listed it, which tells
// domains apart, and its QEMU process when libvirt's pid file and the
// process can be read (a local libvirtd): a domain started again or
// migrated back is the same domain in a new process, which lost the live
// changes libvirt does not know of (passthrough).
func (s *libvirtSource) identity(vm string) (sample.VMIdentity, string) {
	s.mu.Lock()
	id := sample.VMIdentity{UUID: s.uuids[vm]}
	s.mu.Unlock()
	if id.UUID == "" || s.pidDir == "" {
		return id, ""
	}
	raw, err := os.ReadFile(filepath.Join(s.pidDir, vm+".pid"))
	if err != nil {
		return id, ""
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if st, err := qmp.StartOf(pid); pid > 0 && err == nil {
		id.PID, id.Boot, id.StartTicks, id.Started = pid, st.Boot, st.Ticks, st.Started
	}
	return id, ""
}

// sourceError keys a sample's error that is the source's, not one VM's
// (the bulk call failed): it says nothing about which VMs exist.
const sourceError = api.SourceError

func (s *libvirtSource) sample(ctx context.Context) ([]sample.Disk, map[string]error, []string) {
	errs := map[string]error{}
	s.mu.Lock()
	// A late answer is worth more than none: the bulk call may take the
	// whole interval, and more on a big host.
	timeout := max(s.timeout, s.interval) + time.Duration(s.disks)*bulkPerDisk
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	byDom, present, err := s.read(cctx)
	cancel()
	if err != nil {
		errs[sourceError] = err
		return nil, errs, nil
	}
	s.waitFacts(ctx, s.refreshFacts(ctx, byDom, present))
	var out []sample.Disk
	for dom, st := range byDom {
		s.rereadOnIOError(dom, st)
		f, err := s.factsOf(dom)
		if err != nil {
			errs[dom] = err
			continue
		}
		for i := range st.Disks {
			// A disk the XML read does not know (hot-plugged before its
			// event came) has no facts yet: it is left out until the
			// re-read, so that no policy sees a zero throttle or a
			// default cache mode for what is unknown.
			if !fill(&st.Disks[i], f) {
				s.event(virt.DomainEvent{Domain: dom, Kind: "unknown-disk"})
				continue
			}
			out = append(out, st.Disks[i])
		}
		s.cad.read(dom)
	}
	return out, errs, s.track(byDom, present, len(out))
}

// read asks libvirt for the stats of the domains due this cycle: every
// active domain in one bulk call when all are due (or the cadence is
// off, or only some domains are read), else one DomainListGetStats for
// the due ones, which spares libvirtd asking the others' QEMUs. present
// is every active domain with its UUID.
func (s *libvirtSource) read(ctx context.Context) (byDom map[string]virt.DomainStat, present map[string]string, err error) {
	bulk := func() (map[string]virt.DomainStat, map[string]string, error) {
		start := time.Now()
		byDom, err := s.api.DomainStats(ctx, s.only...)
		s.observe("libvirt", "get_all_domain_stats", time.Since(start))
		present := make(map[string]string, len(byDom))
		for dom, st := range byDom {
			present[dom] = st.UUID
		}
		return byDom, present, err
	}
	if !s.cad.enabled() || len(s.only) > 0 {
		byDom, present, err := bulk()
		if err == nil {
			vms := make([]dueVM, 0, len(byDom))
			for dom := range byDom {
				vms = append(vms, dueVM{name: dom})
			}
			s.cad.due(s.cad.now(), vms)
		}
		return byDom, present, err
	}
	// Listing is libvirtd's own bookkeeping: it asks no QEMU.
	start := time.Now()
	doms, err := s.api.Domains(ctx)
	s.observe("libvirt", "list_domains", time.Since(start))
	if err != nil {
		return nil, nil, err
	}
	vms := make([]dueVM, len(doms))
	for i, d := range doms {
		vms[i] = dueVM{name: d.Name, pid: s.pidOf(d)}
	}
	due := s.cad.due(s.cad.now(), vms)
	if len(due) == len(doms) {
		return bulk()
	}
	pick := make([]virt.DomainInfo, 0, len(due))
	present = make(map[string]string, len(doms))
	for _, d := range doms {
		present[d.Name] = d.UUID
		if due[d.Name] {
			pick = append(pick, d)
		}
	}
	start = time.Now()
	byDom, err = s.api.DomainStatsOf(ctx, pick)
	s.observe("libvirt", "list_get_stats", time.Since(start))
	for dom, st := range byDom { // started between the list and the call
		present[dom] = st.UUID
	}
	return byDom, present, err
}

// pidOf is a running domain's QEMU process from libvirt's pid file, read
// again only when the domain's id changes (it was started again); 0 when
// unknown.
func (s *libvirtSource) pidOf(d virt.DomainInfo) int {
	if s.pidDir == "" {
		return 0
	}
	s.mu.Lock()
	p, ok := s.pids[d.Name]
	s.mu.Unlock()
	if ok && p.id == d.ID {
		return p.pid
	}
	raw, err := os.ReadFile(filepath.Join(s.pidDir, d.Name+".pid"))
	pid := 0
	if err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	s.mu.Lock()
	s.pids[d.Name] = domainPID{id: d.ID, pid: pid}
	s.mu.Unlock()
	return pid
}

type domainPID struct {
	id  int32
	pid int
}

func (s *libvirtSource) cadences() map[string]CadenceInfo { return s.cad.infos() }

// track notes which domains exist now (present) and their state as last
// sampled, and returns the ones gone since the last cycle.
func (s *libvirtSource) track(byDom map[string]virt.DomainStat, present map[string]string, disks int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	states := make(map[string]VMState, len(present))
	for dom := range present {
		if st, ok := byDom[dom]; ok {
			states[dom] = VMState{State: st.State, Reason: st.Reason}
		} else if st, ok := s.states[dom]; ok {
			states[dom] = st
		}
	}
	s.states, s.uuids = states, present
	if disks > s.disks || len(byDom) == len(present) {
		s.disks = disks // the bulk call's deadline follows the most disks read at once
	}
	for dom := range s.known {
		if _, ok := present[dom]; !ok {
			delete(s.known, dom)
			delete(s.facts, dom)
			delete(s.pids, dom)
			s.sink.Forget(dom)
			s.gone = append(s.gone, dom)
		}
	}
	for dom := range present {
		s.known[dom] = true
	}
	gone := s.gone
	s.gone = nil
	return gone
}

// refreshFacts starts an XML read for every present domain that has
// none, whose facts an event made stale, or whose slow re-read is due (a
// quiet domain's too, so that its next read has them); it returns the
// reads under way that this cycle's domains (byDom) need.
func (s *libvirtSource) refreshFacts(ctx context.Context, byDom map[string]virt.DomainStat, present map[string]string) []chan struct{} {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var wait []chan struct{}
	for dom := range present {
		f := s.facts[dom]
		if f == nil {
			f = &domainFacts{carried: true}
			s.facts[dom] = f
		}
		if f.reading == nil && (!f.ok || f.stale || now.After(f.due)) {
			f.reading, f.stale = make(chan struct{}), false
			go s.readFacts(ctx, dom, f)
		}
		if _, ok := byDom[dom]; ok && f.reading != nil {
			wait = append(wait, f.reading)
		}
	}
	return wait
}

// waitFacts waits for XML reads, at most a short part of the interval.
func (s *libvirtSource) waitFacts(ctx context.Context, reads []chan struct{}) {
	if len(reads) == 0 {
		return
	}
	t := time.NewTimer(min(factsWaitPerCall, s.interval/2))
	defer t.Stop()
	for _, r := range reads {
		select {
		case <-r:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// readFacts reads one domain's XML with its own deadline.
func (s *libvirtSource) readFacts(ctx context.Context, dom string, f *domainFacts) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		s.readDone(f, domainFacts{}, ctx.Err())
		return
	}
	gen := s.sink.ThrottleGeneration(dom)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	start := time.Now()
	doc, err := s.api.DomainXML(cctx, dom, false)
	cancel()
	s.observe("libvirt", "get_domain_xml", time.Since(start))
	var disks []virt.DomainDisk
	if err == nil {
		disks, err = virt.ParseDomainDisks(doc)
	}
	if err != nil {
		s.readDone(f, domainFacts{}, fmt.Errorf("domain %s XML: %w", dom, err))
		return
	}
	throttles := make(map[string]sample.Throttle, len(disks))
	for _, d := range disks {
		throttles[d.Target] = d.Throttle
	}
	s.sink.NoteThrottles(dom, gen, throttles)
	s.noteCarried(dom, f, doc)
	next := factsFrom(disks)
	// Disk errors change as rarely as the XML and are read with it (and
	// again while the domain is paused on one): io-status costs no call
	// per cycle.
	cctx, cancel = context.WithTimeout(ctx, s.timeout)
	if errs, err := s.api.DiskErrors(cctx, dom); err == nil {
		next.ioErrs = errs
	}
	cancel()
	s.readDone(f, next, nil)
}

// noteCarried hands the records the domain carries to the sink, once
// per first sight or arrival: before the read completes, so that no
// cycle evaluates the domain's disks before its records are known.
func (s *libvirtSource) noteCarried(dom string, f *domainFacts, doc string) {
	s.mu.Lock()
	want := f.carried && s.owners != nil
	f.carried = false
	s.mu.Unlock()
	if !want {
		return
	}
	o, found, err := virt.ParseDomainOwnership(dom, doc)
	switch {
	case err != nil:
		s.log.Warn("qtune records of a domain not readable", "vm", dom, "error", err.Error())
	case found:
		s.owners.CarriedRecords(dom, o)
	}
}

// factsRetry is how soon a failed XML read of a domain with earlier
// facts is tried again (a domain with none is tried every cycle).
const factsRetry = 30 * time.Second

func (s *libvirtSource) readDone(f *domainFacts, next domainFacts, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		f.err, f.due = err, time.Now().Add(factsRetry)
	} else {
		f.disks, f.qcow2, f.ioErrs, f.ok, f.err = next.disks, next.qcow2, next.ioErrs, true, nil
		// Spread the safety-net re-reads so they do not all come at once.
		f.due = time.Now().Add(factsMaxAge - time.Duration(rand.Int64N(int64(factsMaxAge/5))))
	}
	close(f.reading)
	f.reading = nil
}

func factsFrom(disks []virt.DomainDisk) domainFacts {
	f := domainFacts{disks: map[string]virt.DomainDisk{}, qcow2: map[string]hoststat.Qcow2Header{}}
	for _, d := range disks {
		f.disks[d.Target] = d
		if d.Format == "qcow2" && strings.HasPrefix(d.Source, "/") {
			if h, err := hoststat.ReadQcow2Header(d.Source); err == nil {
				f.qcow2[d.Target] = h
			}
		}
	}
	return f
}

// factsOf returns a domain's facts for this cycle: the last good read
// (a failed re-read keeps it), or why there is none yet.
func (s *libvirtSource) factsOf(dom string) (domainFacts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.facts[dom]
	switch {
	case f == nil:
		return domainFacts{}, fmt.Errorf("domain %s: no XML read yet", dom)
	case f.ok:
		return domainFacts{disks: f.disks, qcow2: f.qcow2, ioErrs: f.ioErrs}, nil
	case f.err != nil:
		return domainFacts{}, f.err
	}
	return domainFacts{}, fmt.Errorf("domain %s: XML read still under way after %v", dom, min(factsWaitPerCall, s.interval/2))
}

// rereadOnIOError asks for the facts again while a domain is paused on
// an I/O error its last read did not show, so that the failing disk's
// io-status is seen within a cycle or two.
func (s *libvirtSource) rereadOnIOError(dom string, st virt.DomainStat) {
	if st.Reason != "ioerror" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.facts[dom]; f != nil && f.ok && len(f.ioErrs) == 0 {
		f.stale = true
	}
}

// fill adds the XML's facts to a disk; false when the XML read has no
// such disk.
func fill(d *sample.Disk, f domainFacts) bool {
	x, ok := f.disks[d.Name]
	if !ok {
		return false
	}
	d.Format, d.BackingDepth, d.QOMPath, d.Throttle = x.Format, x.BackingDepth, x.QOMPath(), x.Throttle
	d.CacheDirect, d.CacheNoFlush = x.CacheFlags()
	if f.ioErrs != nil {
		d.IOStatus = "ok"
		if e := f.ioErrs[d.Name]; e != "" {
			d.IOStatus = e
		}
	}
	if h, ok := f.qcow2[d.Name]; ok {
		d.ClusterSize, d.ExtendedL2 = h.ClusterSize, h.ExtendedL2
		d.L2CacheSize = qmp.L2CacheInForce(*d, x.MetadataCacheMax)
	}
	return true
}
