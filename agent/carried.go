package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// Live migration moves a libvirt domain, with its live throttles and
// qtune's records in its metadata, to another host. The records follow
// the domain this way:
//
//	source host                      destination host
//	  (change: record in metadata
//	   and store, before the change)
//	  migrating: nothing changed ──▶   migrating-in: nothing changed
//	  migrated-out: records dropped     resumed-migrated / first sight:
//	  from the store, domain untouched  records it does not hold adopted
//	                                    as its own, then reconciled
//
// A migration that fails sends no migrated-out: the source keeps all.

// carriedRecords hears, between cycles, the records libvirt domains carry
// and their migration events; the cycle takes them (takeCarried).
type carriedRecords struct {
	*tuning.LibvirtBackend

	mu        sync.Mutex
	carried   map[string]virt.Ownership // domain: its records, as last read
	left      []string                  // domains migrated away since the last cycle
	migrating map[string]virt.MigrationPhase
	written   map[string]bool // domains whose records were written since compared
}

// The agent's libvirt sink must hear the records, or nothing is adopted:
// facts finds out by a type assertion, so the compiler checks it here.
var _ facts.OwnershipSink = (*carriedRecords)(nil)

func newCarriedRecords(b *tuning.LibvirtBackend) *carriedRecords {
	return &carriedRecords{LibvirtBackend: b, carried: map[string]virt.Ownership{}, migrating: map[string]virt.MigrationPhase{},
		written: map[string]bool{}}
}

// RecordsWritten implements facts.OwnershipSink: the next cycle compares
// the domain's records with the store's again, whenever it last did
// (a record edited by hand is marked in status at once).
func (c *carriedRecords) RecordsWritten(domain string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written[domain] = true
}

// takeWritten reports whether domain's records were written since the
// last call for it.
func (c *carriedRecords) takeWritten(domain string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.written[domain]
	delete(c.written, domain)
	return w
}

// CarriedRecords implements facts.OwnershipSink.
func (c *carriedRecords) CarriedRecords(domain string, o virt.Ownership) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.carried[domain] = o
}

// Migration implements facts.OwnershipSink. Records read before the
// domain left are stale once it has: they are dropped with it.
func (c *carriedRecords) Migration(domain string, ph virt.MigrationPhase) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ph {
	case virt.MigrationOut:
		delete(c.carried, domain)
		delete(c.migrating, domain)
		delete(c.written, domain)
		c.left = append(c.left, domain)
	case virt.MigrationIn, virt.MigrationSuspended:
		c.migrating[domain] = ph
	case virt.MigrationResumed:
		delete(c.migrating, domain)
	}
}

// take returns the domains that left and the records to adopt, keeping
// those of a domain still migrating in for a later cycle: a migration
// that fails there must leave its records with the source alone.
func (c *carriedRecords) take(arriving map[string]bool) (left []string, carried map[string]virt.Ownership) {
	c.mu.Lock()
	defer c.mu.Unlock()
	left, c.left = c.left, nil
	carried = map[string]virt.Ownership{}
	for dom, o := range c.carried {
		if _, in := c.migrating[dom]; !in && !arriving[dom] {
			carried[dom] = o
			delete(c.carried, dom)
		}
	}
	return left, carried
}

// carrier is a source whose VMs carry qtune's records (libvirt).
type carrier interface {
	carriedRecords() *carriedRecords
}

func (s *libvirtSource) carriedRecords() *carriedRecords { return s.carried }

// takeCarried runs first in each cycle: the records of domains that
// migrated away go (the destination owns them now), and the records a
// domain brought that the store does not hold become this host's own,
// to be reconciled with the others like any record.
func (a *Agent) takeCarried(now time.Time) {
	c, ok := a.src.(carrier)
	if !ok || c.carriedRecords() == nil {
		return
	}
	left, carried := c.carriedRecords().take(a.arriving())
	for _, vm := range left {
		n, err := a.exec.LetGo(vm, "the domain migrated to another host, which owns its knobs now")
		if err != nil {
			a.log.Error("records of a migrated domain not dropped", "vm", vm, "error", err.Error())
			continue
		}
		if n > 0 {
			a.log.Info("domain migrated away: its records went with it", "vm", vm, "records", n)
		}
		a.eval.ForgetVM(vm)
	}
	doms := make([]string, 0, len(carried))
	for dom := range carried {
		doms = append(doms, dom)
	}
	sort.Strings(doms)
	for _, dom := range doms {
		for _, k := range carried[dom].Knobs {
			o, err := tuning.OwnedFromKnob(dom, k)
			if err != nil {
				a.log.Warn("a record the domain carries is not readable", "vm", dom, "error", err.Error())
				continue
			}
			if ok, err := a.exec.Import(o); err != nil {
				a.log.Error("a record the domain carries not adopted", "vm", dom, "disk", k.Disk, "knob", k.Kind, "error", err.Error())
			} else if ok {
				a.log.Info("adopted a record the domain carries", "vm", dom, "disk", k.Disk, "knob", k.Kind, "rule", k.Rule,
					"set_on", k.Host, "original", o.Original.String())
				a.recon.actions = append(a.recon.actions, api.ActionStatus{At: now, Rule: o.Rule, VM: dom, Disk: o.Disk,
					Knob: string(o.Knob), Result: string(state.ResultAdopted), Before: o.Original.String(), After: o.Applied.String(),
					Reason: "carried in by the domain from " + k.Host})
			}
		}
	}
}

// migrationProbe says which VMs with records are in a live migration
// now; the source's side of a migration sends no event until its end.
func (a *Agent) migrationProbe(ctx context.Context, owned []state.Owned) {
	a.recon.migrating = map[string]string{}
	s, ok := a.src.(*libvirtSource)
	if !ok || s.backend == nil || s.backend.Libvirt() == nil {
		return
	}
	seen := map[string]bool{}
	for _, o := range owned {
		if seen[o.VM] {
			continue
		}
		seen[o.VM] = true
		cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		j, err := s.backend.Libvirt().Job(cctx, o.VM)
		cancel()
		if err == nil && j.Migrating() {
			a.recon.migrating[o.VM] = fmt.Sprintf("%s under way: qtune changes nothing on the domain until it has landed", j.Operation)
			continue
		}
		a.compareRecords(ctx, s.backend.Libvirt(), o.VM, owned)
	}
}

// recordsCheckEvery is how often a domain's records are compared with
// the store's, for status, besides after each write of them (libvirt's
// metadata-change event).
const recordsCheckEvery = 30 * time.Second

// compareRecords reads the records vm carries, now and then, and notes
// where they and the store's disagree (status marks those knobs).
func (a *Agent) compareRecords(ctx context.Context, v *virt.Libvirt, vm string, owned []state.Owned) {
	r := a.recon
	if r.recordsChecked == nil {
		r.recordsChecked, r.mismatch = map[string]time.Time{}, map[string]string{}
	}
	now := time.Now()
	written := false
	if c, ok := a.src.(carrier); ok && c.carriedRecords() != nil {
		written = c.carriedRecords().takeWritten(vm)
	}
	if now.Sub(r.recordsChecked[vm]) < recordsCheckEvery && !written {
		return
	}
	r.recordsChecked[vm] = now
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	carried, err := v.Ownership(cctx, vm, false)
	cancel()
	for k := range r.mismatch {
		if strings.HasPrefix(k, vm+"/") {
			delete(r.mismatch, k)
		}
	}
	if err != nil {
		return
	}
	for _, why := range tuning.CompareRecords(vm, owned, carried) {
		// "vm/disk kind: ..." names the knob as ownedKey does.
		head, _, _ := strings.Cut(why, ":")
		r.mismatch[strings.Replace(head, " ", "/", 1)] = why
	}
}

// migrationBlockers names, per VM, the copies whose block job makes
// libvirt refuse a migration.
func migrationBlockers(jobs []state.Job) map[string]string {
	out := map[string]string{}
	for _, j := range jobs {
		if j.State.Final() {
			continue
		}
		why := fmt.Sprintf("%s %s of %s (%s)", j.Kind, j.ID, j.Disk, j.State)
		if prev := out[j.VM]; prev != "" {
			why = prev + ", " + why
		}
		out[j.VM] = why
	}
	for vm, why := range out {
		out[vm] = "libvirt refuses to migrate the domain while a block job runs: " + strings.TrimSpace(why)
	}
	return out
}

// noteMigrations puts into the VMs' status which are migrating and which
// a copy keeps from migrating.
func (a *Agent) noteMigrations(vms map[string]*api.VMStatus) {
	for vm, why := range a.recon.migrating {
		if v := vms[vm]; v != nil {
			v.Migration = why
		}
	}
	if _, libvirt := a.src.(*libvirtSource); !libvirt {
		return // only libvirt migrates a VM, and refuses while a block job runs
	}
	a.mu.Lock()
	jm := a.jobs
	a.mu.Unlock()
	if jm == nil {
		return
	}
	jobs, err := jm.Jobs()
	if err != nil {
		return
	}
	for vm, why := range migrationBlockers(jobs) {
		if v := vms[vm]; v != nil {
			v.MigrationBlocked = why
		}
	}
}

// arriving is the domains still being set up here: an incoming migration
// (paused, starting up) or the switch-over. Their records are adopted
// and their disks evaluated once they run: a guest paused for its
// migration writes nothing, and a rule would take that for calm.
func (a *Agent) arriving() map[string]bool {
	ds, ok := a.src.(domainStater)
	if !ok {
		return nil
	}
	out := map[string]bool{}
	for vm, st := range ds.DomainStates() {
		if st.State == "paused" && (st.Reason == "starting_up" || st.Reason == "migration") {
			out[vm] = true
		}
	}
	return out
}

// withoutArriving leaves out the disks of domains arriving (see arriving).
func (a *Agent) withoutArriving(disks []sample.Disk) []sample.Disk {
	arriving := a.arriving()
	if len(arriving) == 0 {
		return disks
	}
	out := disks[:0:0]
	for _, d := range disks {
		if !arriving[d.VM] {
			out = append(out, d)
		}
	}
	return out
}
