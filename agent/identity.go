package agent

import (
	"time"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// identifier is a source that tells a VM from a later one with the same
// name.
type identifier interface {
	// Identity is vm's identity as last connected or listed, and why it
	// is unknown when it could not be read ("" when it could).
	Identity(vm string) (sample.VMIdentity, string)
}

func (a *Agent) identity(vm string) (sample.VMIdentity, string) {
	if s, ok := a.src.(identifier); ok {
		return s.Identity(vm)
	}
	return sample.VMIdentity{}, ""
}

// otherVM reports whether o's VM is another one than the one its knob
// was taken on: a libvirt domain defined anew under the same name, or a
// plain QEMU started again on the same socket. The new VM never had
// qtune's change, so its record is forgotten (not drift: nobody changed
// the knob) and the VM's rules start afresh. A record of unknown
// identity adopts the VM's; a VM whose identity cannot be read is
// matched by name, with a note in the log and in status.
func (a *Agent) otherVM(now time.Time, o *state.Owned) bool {
	cur, note := a.identity(o.VM)
	a.noteIdentity(o.VM, note)
	switch {
	case !cur.Known():
		return false
	case !o.VMID.Known():
		if err := a.exec.AdoptIdentity(*o, cur); err == nil {
			o.VMID = cur
		}
		return false
	case !o.VMID.Differs(cur):
		return false
	}
	k, why := ownedKey(*o), sample.DifferentVM(o.VM, o.VMID, cur)
	if err := a.exec.Forget(*o, why); err != nil {
		a.recon.orphaned(k, now, "its VM is another one with the same name; the old record cannot be dropped: "+err.Error())
		return true
	}
	a.noteReconciled(now, *o, tuning.Outcome{Result: state.ResultForgotten, Before: o.Applied, Reason: why}, nil)
	a.eval.ForgetVM(o.VM)
	a.settle(k)
	return true
}

func (a *Agent) noteIdentity(vm, note string) {
	r := a.recon
	if note == "" {
		delete(r.idNote, vm)
		a.failLog.Recovered("identity/" + vm)
		return
	}
	r.idNote[vm] = note
	if log, n := a.failLog.Failed("identity/"+vm, note); log {
		a.log.Warn("VM identity unknown: its owned knobs are matched by name only", "vm", vm, "reason", note, "repeats_since_last_line", n)
	}
}

// vmIdentity is the identity the executor keeps in a record it writes.
func (a *Agent) vmIdentity(vm string) sample.VMIdentity {
	id, _ := a.identity(vm)
	return id
}
