package tuning

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// RefuseRecord: the record of a change could not be written into the
// VM, where it must travel with it; the change is not made.
const RefuseRecord RefusalCode = "record"

// DomainRecords is a backend whose VMs carry qtune's records of what it
// changed on them (libvirt's domain metadata), so that a VM moved to
// another host takes them along and the qtune there owns what this one
// set. The executor writes them beside its store: before a change, with
// the record of its intent, and again when a record goes. Plain QEMU
// has nothing to carry them in and does not implement it.
type DomainRecords interface {
	// WriteRecords replaces the VM's knob records with owned (none:
	// removes them); with persist, the persistent definition's too.
	WriteRecords(ctx context.Context, vm string, owned []state.Owned, persist bool) error
}

// RefuseMigrating: the VM is in a live migration; qtune changes nothing
// on it until it has landed (and then the destination's qtune owns it).
const RefuseMigrating RefusalCode = "migrating"

// MigrationWatcher is a backend that can tell a VM in a live migration.
type MigrationWatcher interface {
	Migrating(ctx context.Context, vm string) (string, bool, error)
}

// refuseMigrating refuses a change of a VM being migrated. A VM whose
// state cannot be read is not refused here: the change itself fails
// then, and says why.
func (e *Executor) refuseMigrating(ctx context.Context, vm string) error {
	mw, ok := e.backend.(MigrationWatcher)
	if !ok {
		return nil
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	op, yes, err := mw.Migrating(cctx, vm)
	if err != nil || !yes {
		return nil
	}
	return &Refusal{Code: RefuseMigrating, Reason: fmt.Sprintf("domain %s is being migrated (%s): nothing is changed on it until it has landed", vm, op)}
}

// Migrating implements MigrationWatcher.
func (b *LibvirtBackend) Migrating(ctx context.Context, vm string) (string, bool, error) {
	j, err := b.v.Job(ctx, vm)
	if err != nil {
		return "", false, err
	}
	return j.Operation, j.Migrating(), nil
}

// OwnedKnobOf is a store record as the domain's metadata carries it.
func OwnedKnobOf(o state.Owned) (virt.OwnedKnob, error) {
	orig, err := json.Marshal(o.Original)
	if err != nil {
		return virt.OwnedKnob{}, fmt.Errorf("record of %s %s: original: %w", o.Target, o.Knob, err)
	}
	set, err := json.Marshal(o.Applied)
	if err != nil {
		return virt.OwnedKnob{}, fmt.Errorf("record of %s %s: value set: %w", o.Target, o.Knob, err)
	}
	return virt.OwnedKnob{Disk: o.Disk, Kind: string(o.Knob), Rule: o.Rule, Original: orig, Set: set,
		Persisted: o.Persist, Host: o.Host, SetAt: o.LastChange, Seq: o.Seq}, nil
}

// OwnedFromKnob is a record read from vm's metadata as the store keeps
// it: owned as applied, the original as recorded where it was taken.
func OwnedFromKnob(vm string, k virt.OwnedKnob) (state.Owned, error) {
	o := state.Owned{Target: state.Target{VM: vm, Disk: k.Disk}, Knob: policy.Knob(k.Kind), Rule: k.Rule,
		Phase: state.PhaseApplied, Since: k.SetAt, LastChange: k.SetAt, Persist: k.Persisted, Host: k.Host, Seq: k.Seq}
	if err := json.Unmarshal(k.Original, &o.Original); err != nil {
		return state.Owned{}, fmt.Errorf("domain %s: record of %s %s: original: %w", vm, k.Disk, k.Kind, err)
	}
	if err := json.Unmarshal(k.Set, &o.Applied); err != nil {
		return state.Owned{}, fmt.Errorf("domain %s: record of %s %s: value set: %w", vm, k.Disk, k.Kind, err)
	}
	return o, nil
}

// travels reports whether a record goes into the VM: one released after
// drift is someone else's knob, nothing for another host to restore.
func travels(o state.Owned) bool { return o.Phase != state.PhaseReleased }

// vmRecords is the store's records of vm, with put in place of its own
// record when given.
func (e *Executor) vmRecords(vm string, put *state.Owned) ([]state.Owned, error) {
	all, err := e.store.AllOwned()
	if err != nil {
		return nil, err
	}
	var out []state.Owned
	for _, o := range all {
		if o.VM != vm || (put != nil && o.Disk == put.Disk && o.Knob == put.Knob) {
			continue
		}
		out = append(out, o)
	}
	if put != nil {
		out = append(out, *put)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// nextSeq numbers a new change of vm after every record of it.
func (e *Executor) nextSeq(vm string) uint64 {
	recs, _ := e.vmRecords(vm, nil)
	var n uint64
	for _, o := range recs {
		n = max(n, o.Seq)
	}
	return n + 1
}

// recordInDomain writes the VM's records into it as they will be once
// rec is stored (rec nil: as the store has them). wasPersisted says a
// record just gone was in the persistent definition, which must lose it
// too. Nothing is written for a backend without DomainRecords.
func (e *Executor) recordInDomain(ctx context.Context, vm string, rec *state.Owned, wasPersisted bool) error {
	dr, ok := e.backend.(DomainRecords)
	if !ok {
		return nil
	}
	recs, err := e.vmRecords(vm, rec)
	if err != nil {
		return fmt.Errorf("records of %s: %w", vm, err)
	}
	persist := wasPersisted
	var keep []state.Owned
	for _, o := range recs {
		if travels(o) {
			keep = append(keep, o)
			persist = persist || o.Persist
		}
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	if err := dr.WriteRecords(cctx, vm, keep, persist); err != nil {
		return fmt.Errorf("write qtune's records into domain %s: %w", vm, err)
	}
	return nil
}

// releaseRecord forgets a knob in the store and in its VM. The store is
// the local truth: a VM that cannot be written is logged (and shown by
// qtune state check), not a reason to keep owning a knob given back.
func (e *Executor) releaseRecord(ctx context.Context, o *state.Owned) error {
	if err := e.store.Release(o.Target, o.Knob); err != nil {
		return err
	}
	e.syncDomain(ctx, o.VM, o.Persist)
	return nil
}

// syncDomain rewrites the VM's records from the store, logging a failure.
func (e *Executor) syncDomain(ctx context.Context, vm string, wasPersisted bool) {
	if err := e.recordInDomain(ctx, vm, nil, wasPersisted); err != nil {
		e.log.Warn("domain records not updated", "vm", vm, "error", err.Error())
	}
}

// Import takes a record found in a VM (it came from another host, or
// from before this store) as qtune's own, unless the store holds one
// for that knob already; it reports whether it did. The original is
// kept as recorded: the knob's value now is what the other host set.
func (e *Executor) Import(o state.Owned) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.store.Owned(o.Target, o.Knob)
	if err != nil || cur != nil {
		return false, err
	}
	if err := e.store.PutOwned(&o); err != nil {
		return false, fmt.Errorf("adopt %s of %s: %w", o.Knob, o.Target, err)
	}
	reason := fmt.Sprintf("adopted from the domain's records (set on %s, original %s)", o.Host, o.Original)
	e.audit(o.Target, policy.Decision{Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob},
		Outcome{Result: state.ResultAdopted, Before: o.Original, After: o.Applied, Reason: reason})
	return true, nil
}

// LetGo drops every record of vm without touching it: the VM left this
// host (migrated) and the qtune where it runs now owns them.
func (e *Executor) LetGo(vm, reason string) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	recs, err := e.vmRecords(vm, nil)
	if err != nil {
		return 0, err
	}
	for _, o := range recs {
		if err := e.store.Release(o.Target, o.Knob); err != nil {
			return 0, fmt.Errorf("let go of %s of %s: %w", o.Knob, o.Target, err)
		}
		e.audit(o.Target, policy.Decision{Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob},
			Outcome{Result: state.ResultHandedOver, Before: o.Applied, Reason: reason})
	}
	return len(recs), nil
}

// WriteRecords implements DomainRecords: the running domain's metadata
// gets every record and keeps its copies and whatever else it holds;
// with persist, the persistent definition's gets the persisted records
// only (a live change, like a copy, ends with its QEMU process, and
// must not come back with a restart or to a host the definition is
// carried to).
func (b *LibvirtBackend) WriteRecords(ctx context.Context, vm string, owned []state.Owned, persist bool) error {
	live, defined, err := splitRecords(owned)
	if err != nil {
		return err
	}
	o, err := b.v.Ownership(ctx, vm, false)
	if err != nil {
		return err
	}
	o.Knobs = live
	if err := b.v.SetOwnership(ctx, vm, o, false); err != nil {
		return err
	}
	if !persist {
		return nil
	}
	d, err := b.v.Ownership(ctx, vm, true)
	if err != nil {
		return err
	}
	d.Knobs = defined
	return b.v.SetDefinedOwnership(ctx, vm, d)
}

// splitRecords is the records as the running domain carries them (all)
// and as its persistent definition does (the persisted ones).
func splitRecords(owned []state.Owned) (live, defined []virt.OwnedKnob, err error) {
	for _, r := range owned {
		k, err := OwnedKnobOf(r)
		if err != nil {
			return nil, nil, err
		}
		live = append(live, k)
		if k.Persisted {
			defined = append(defined, k)
		}
	}
	return live, defined, nil
}

// WriteJobs replaces the copies the domain's records name with jobs
// (none: removes them), live only: a copy ends with its QEMU process.
func (b *LibvirtBackend) WriteJobs(ctx context.Context, vm string, jobs []virt.CopyJob) error {
	o, err := b.v.Ownership(ctx, vm, false)
	if err != nil {
		return err
	}
	o.Jobs = jobs
	return b.v.SetOwnership(ctx, vm, o, false)
}

// JobRecords is a backend whose VMs also carry the copies qtune runs on
// them.
type JobRecords interface {
	WriteJobs(ctx context.Context, vm string, jobs []virt.CopyJob) error
}

// RecordJobs writes the copies running on vm into its records, under the
// executor's lock, so that it does not cross a write of the knobs' (both
// rewrite the one metadata element).
func (e *Executor) RecordJobs(ctx context.Context, vm string, jobs []virt.CopyJob) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	jr, ok := e.backend.(JobRecords)
	if !ok {
		return nil
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	return jr.WriteJobs(cctx, vm, jobs)
}

// Host is the name this executor gives its host in the records.
func (e *Executor) Host() string { return e.host }

// CompareRecords says where the records the store holds of vm and those
// the VM carries disagree: a record on one side only, or another rule,
// original or value set. Records released after drift are the store's
// alone and not compared. Nil: they agree.
func CompareRecords(vm string, stored []state.Owned, carried virt.Ownership) []string {
	type key struct{ disk, kind string }
	mine := map[key]state.Owned{}
	for _, o := range stored {
		if o.VM == vm && travels(o) {
			mine[key{o.Disk, string(o.Knob)}] = o
		}
	}
	var out []string
	seen := map[key]bool{}
	for _, k := range carried.Knobs {
		kk := key{k.Disk, k.Kind}
		seen[kk] = true
		where := fmt.Sprintf("%s/%s %s", vm, k.Disk, k.Kind)
		o, ok := mine[kk]
		if !ok {
			out = append(out, fmt.Sprintf("%s: the domain carries a record of rule %s (set on %s) the store does not hold", where, k.Rule, k.Host))
			continue
		}
		theirs, err := OwnedFromKnob(vm, k)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: the domain's record is not readable: %v", where, err))
		case theirs.Rule != o.Rule:
			out = append(out, fmt.Sprintf("%s: rule %s in the store, %s in the domain", where, o.Rule, theirs.Rule))
		case !theirs.Original.Equal(o.Original):
			out = append(out, fmt.Sprintf("%s: original %s in the store, %s in the domain", where, o.Original, theirs.Original))
		case !theirs.Applied.Equal(o.Applied):
			out = append(out, fmt.Sprintf("%s: value set %s in the store, %s in the domain", where, o.Applied, theirs.Applied))
		}
	}
	keys := make([]key, 0, len(mine))
	for k := range mine {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].disk+keys[i].kind < keys[j].disk+keys[j].kind })
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s/%s %s: the store holds a record of rule %s the domain does not carry", vm, k.disk, k.kind, mine[k].Rule))
	}
	return out
}
