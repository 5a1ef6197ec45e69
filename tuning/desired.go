package tuning

import (
	"fmt"
	"math"
	"time"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// desired is the state a decision asks for, given the knob's state before
// qtune touched it (original) and now (cur), from the knob's kind.
func (e *Executor) desired(d policy.Decision, original, cur state.KnobState, t state.Target) (state.KnobState, error) {
	kind, err := knobKindOf(d.Knob)
	if err != nil {
		return state.KnobState{}, err
	}
	return kind.Desired(e, d, original, cur, t)
}

// desiredL2 sizes the cache: full coverage ("auto") or the rule's size,
// clamped by the rule's max and by what is left of the host-wide budget.
func (e *Executor) desiredL2(d policy.Decision, cur state.KnobState, t state.Target) (state.KnobState, error) {
	spec := d.Action.L2Cache
	if spec == nil || cur.L2() == nil {
		return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "not a qcow2 disk, or no L2 cache decision"}
	}
	size := spec.Size
	if spec.Auto {
		size = cur.L2().Needed
		if size == 0 {
			return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "full-coverage size unknown (virtual or cluster size missing)"}
		}
	}
	if spec.Max != 0 {
		size = min(size, spec.Max)
	}
	size = max(size, e.limits.L2Min)
	used, err := e.l2Used(t)
	if err != nil {
		return state.KnobState{}, err
	}
	if left := e.limits.L2Budget - min(used, e.limits.L2Budget); size > left {
		if left <= cur.L2().Size {
			return state.KnobState{}, &Refusal{Code: RefuseBudget, Reason: fmt.Sprintf("L2 cache budget of %d bytes is used up (%d by other disks)", e.limits.L2Budget, used)}
		}
		size = left
	}
	if err := l2WithinLimit(size, cur.L2().Limit); err != nil {
		return state.KnobState{}, err
	}
	return state.OfL2(state.L2State{Size: size, Needed: cur.L2().Needed}), nil
}

// l2WithinLimit refuses an L2 cache above the node's cache-size, which
// QEMU refuses ("l2-cache-size may not exceed cache-size") on every
// reopen. qtune does not raise the cap itself: it bounds the node's whole
// metadata cache, it is the operator's setting (under libvirt, part of
// the domain's definition), and a refusal that says so is safer than a
// cap lifted behind the operator's back.
func l2WithinLimit(size, limit uint64) error {
	if limit == 0 || size <= limit {
		return nil
	}
	return &Refusal{Code: RefuseBounds, Reason: fmt.Sprintf(
		"the node's cache-size is %d bytes (under libvirt: the disk's <driver><metadata_cache><max_size>), below the wanted "+
			"l2-cache-size of %d, and QEMU refuses an L2 cache above it: raise max_size to %d or more (virsh edit) and restart "+
			"the domain, or give the rule a max of %d or less", limit, size, size, limit)}
}

// l2Used is the L2 cache qtune gave every other disk.
func (e *Executor) l2Used(self state.Target) (uint64, error) {
	all, err := e.store.AllOwned()
	if err != nil {
		return 0, err
	}
	var used uint64
	for _, o := range all {
		if o.Knob == policy.KnobL2Cache && o.Target != self && o.Applied.L2() != nil && o.Phase != state.PhaseReleased {
			used += o.Applied.L2().Size
		}
	}
	return used, nil
}

// CombineThrottle merges the throttle a rule wants with one that was in
// force before qtune arrived, so that qtune never silently lifts a limit
// someone else set: per field, the lower of the two non-zero limits (and
// the burst length that goes with the burst chosen). Group and iops_size
// come from the rule when it sets them. QEMU cannot hold a total limit
// and a read/write split of the same kind together; when the two
// throttles disagree on that, the combination is refused rather than
// guessed.
func CombineThrottle(pre, want sample.Throttle) (sample.Throttle, error) {
	for _, kind := range []struct {
		name                   string
		pt, pr, pw, wt, wr, ww uint64
	}{
		{"iops", pre.IOPS, pre.IOPSRead, pre.IOPSWrite, want.IOPS, want.IOPSRead, want.IOPSWrite},
		{"bps", pre.BPS, pre.BPSRead, pre.BPSWrite, want.BPS, want.BPSRead, want.BPSWrite},
	} {
		if (kind.pt != 0 && kind.wr|kind.ww != 0) || (kind.wt != 0 && kind.pr|kind.pw != 0) {
			return sample.Throttle{}, &Refusal{Code: RefuseIncompatible, Reason: fmt.Sprintf(
				"the disk already has a %s limit in another shape (total vs read/write) than the rule's; QEMU cannot combine them", kind.name)}
		}
	}
	out := want
	lower := func(a, b uint64) uint64 {
		switch {
		case a == 0:
			return b
		case b == 0:
			return a
		}
		return min(a, b)
	}
	burst := func(pMax, pLen, wMax, wLen uint64) (uint64, uint64) {
		m := lower(pMax, wMax)
		switch {
		case m == 0:
			return 0, 0
		case m == wMax:
			return m, wLen
		}
		return m, pLen
	}
	out.IOPS, out.IOPSRead, out.IOPSWrite = lower(pre.IOPS, want.IOPS), lower(pre.IOPSRead, want.IOPSRead), lower(pre.IOPSWrite, want.IOPSWrite)
	out.BPS, out.BPSRead, out.BPSWrite = lower(pre.BPS, want.BPS), lower(pre.BPSRead, want.BPSRead), lower(pre.BPSWrite, want.BPSWrite)
	out.IOPSMax, out.IOPSMaxLen = burst(pre.IOPSMax, pre.IOPSMaxLen, want.IOPSMax, want.IOPSMaxLen)
	out.IOPSReadMax, out.IOPSReadMaxLen = burst(pre.IOPSReadMax, pre.IOPSReadMaxLen, want.IOPSReadMax, want.IOPSReadMaxLen)
	out.IOPSWriteMax, out.IOPSWriteMaxLen = burst(pre.IOPSWriteMax, pre.IOPSWriteMaxLen, want.IOPSWriteMax, want.IOPSWriteMaxLen)
	out.BPSMax, out.BPSMaxLen = burst(pre.BPSMax, pre.BPSMaxLen, want.BPSMax, want.BPSMaxLen)
	out.BPSReadMax, out.BPSReadMaxLen = burst(pre.BPSReadMax, pre.BPSReadMaxLen, want.BPSReadMax, want.BPSReadMaxLen)
	out.BPSWriteMax, out.BPSWriteMaxLen = burst(pre.BPSWriteMax, pre.BPSWriteMaxLen, want.BPSWriteMax, want.BPSWriteMaxLen)
	if out.Group == "" {
		out.Group = pre.Group
	}
	if out.IOPSSize == 0 {
		out.IOPSSize = pre.IOPSSize
	}
	return out, nil
}

// checkLimits applies bounds, minimum change, cooldown and rate limits.
func (e *Executor) checkLimits(t state.Target, d policy.Decision, owned *state.Owned, cur, want state.KnobState, now time.Time) error {
	if kind, err := knobKindOf(d.Knob); err == nil && kind.Bounds != nil {
		if err := kind.Bounds(e, want); err != nil {
			return err
		}
	}
	if observes(d.Knob) {
		return nil
	}
	if owned != nil && owned.Phase == state.PhaseApplied {
		if next := owned.LastChange.Add(d.Cooldown); now.Before(next) {
			return &Refusal{Code: RefuseCooldown, Reason: fmt.Sprintf("rule %s changed this knob at %s; next change allowed at %s",
				owned.Rule, owned.LastChange.Format(time.RFC3339), next.Format(time.RFC3339))}
		}
		if rel := relativeChange(d.Knob, cur, want); rel < e.limits.MinChange {
			return &Refusal{Code: RefuseMinChange, Reason: fmt.Sprintf("change of %.1f%% is below the minimum of %.1f%%", rel*100, e.limits.MinChange*100)}
		}
	}
	vmCount, hostCount := 0, 0
	keep := e.changes[:0]
	for _, c := range e.changes {
		if now.Sub(c.at) >= time.Hour {
			continue
		}
		keep = append(keep, c)
		if c.vm == t.VM {
			vmCount++
		}
		if now.Sub(c.at) < time.Minute {
			hostCount++
		}
	}
	e.changes = keep
	if vmCount >= e.limits.PerVMPerHour {
		return &Refusal{Code: RefuseRateLimitVM, Reason: fmt.Sprintf("%d changes to VM %s in the last hour (limit %d)", vmCount, t.VM, e.limits.PerVMPerHour)}
	}
	if hostCount >= e.limits.PerHostPerMinute {
		return &Refusal{Code: RefuseRateLimitHost, Reason: fmt.Sprintf("%d changes on this host in the last minute (limit %d)", hostCount, e.limits.PerHostPerMinute)}
	}
	return nil
}

func (e *Executor) throttleBounds(t sample.Throttle) error {
	for name, v := range map[string]uint64{"iops": t.IOPS, "iops_rd": t.IOPSRead, "iops_wr": t.IOPSWrite} {
		if v != 0 && v < e.limits.MinIOPS {
			return &Refusal{Code: RefuseBounds, Reason: fmt.Sprintf("%s=%d is below the floor of %d", name, v, e.limits.MinIOPS)}
		}
	}
	for name, v := range map[string]uint64{"bps": t.BPS, "bps_rd": t.BPSRead, "bps_wr": t.BPSWrite} {
		if v != 0 && v < e.limits.MinBPS {
			return &Refusal{Code: RefuseBounds, Reason: fmt.Sprintf("%s=%d is below the floor of %d", name, v, e.limits.MinBPS)}
		}
	}
	return nil
}

// relativeChange is the relative size of a change, as the knob's kind
// measures it (1 for any change of a kind that does not).
func relativeChange(k policy.Knob, a, b state.KnobState) float64 {
	if kind, err := knobKindOf(k); err == nil && kind.Change != nil {
		return kind.Change(a, b)
	}
	return 1
}

func rel(a, b uint64) float64 {
	if a == b {
		return 0
	}
	if a == 0 || b == 0 {
		return 1
	}
	return math.Abs(float64(a)-float64(b)) / float64(max(a, b))
}
