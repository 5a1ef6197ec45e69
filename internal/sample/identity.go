package sample

import (
	"fmt"
	"time"
)

// VMIdentity tells a VM from another that later has the same name. A
// libvirt domain is its UUID. A plain QEMU VM is the QEMU process behind
// its QMP socket, since that process is what holds qtune's live changes:
// its pid and its start in clock ticks since boot (exact within one
// boot, unlike a wall time, which moves when the clock is stepped), with
// the boot's id. Socket and wall-clock start are kept to be shown.
//
// The zero value, or a process whose start could not be read, is
// unknown: the VM is then matched by its name alone, as records written
// before qtune kept identities are.
type VMIdentity struct {
	UUID       string    `json:"uuid,omitempty"`
	Socket     string    `json:"socket,omitempty"`
	PID        int       `json:"pid,omitempty"`
	Boot       string    `json:"boot_id,omitempty"`
	StartTicks uint64    `json:"start_ticks,omitempty"`
	Started    time.Time `json:"started,omitzero"`
}

// Known reports whether id can tell one VM from another.
func (id VMIdentity) Known() bool { return id.UUID != "" || id.processKnown() }

func (id VMIdentity) processKnown() bool { return id.PID > 0 && id.StartTicks > 0 && id.Boot != "" }

// Differs reports whether cur is provably another VM than id: both known
// and of the same kind, and not the same domain or process. Anything
// less certain is the same VM, matched by name.
func (id VMIdentity) Differs(cur VMIdentity) bool {
	switch {
	case id.UUID != "" && cur.UUID != "":
		return id.UUID != cur.UUID
	case id.processKnown() && cur.processKnown():
		return id.Boot != cur.Boot || id.PID != cur.PID || id.StartTicks != cur.StartTicks
	}
	return false
}

// String is the identity as status and the decision log show it.
func (id VMIdentity) String() string {
	switch {
	case id.UUID != "":
		return "uuid " + id.UUID
	case id.processKnown():
		return fmt.Sprintf("qemu pid %d started %s on %s", id.PID, id.Started.UTC().Format(time.RFC3339), id.Socket)
	case id.Socket != "":
		return "qemu on " + id.Socket + " (process unknown)"
	}
	return "unknown"
}

// DifferentVM is why the records of a VM that is now another one with
// the same name are forgotten: a libvirt domain redefined (new UUID), or
// a plain QEMU VM whose process was started again, which took qtune's
// live changes with it.
func DifferentVM(vm string, was, now VMIdentity) string {
	if was.UUID != "" {
		return fmt.Sprintf("vm %s is a different domain (uuid %s, was %s): records of the old one forgotten", vm, now.UUID, was.UUID)
	}
	return fmt.Sprintf("vm %s is a new QEMU process (pid %d started %s, was pid %d started %s): its live changes went with the old one; records forgotten",
		vm, now.PID, now.Started.UTC().Format(time.RFC3339), was.PID, was.Started.UTC().Format(time.RFC3339))
}

// OtherProcess reports whether cur is provably another QEMU process
// than id (both known), whatever its domain.
func (id VMIdentity) OtherProcess(cur VMIdentity) bool {
	return id.processKnown() && cur.processKnown() &&
		(id.Boot != cur.Boot || id.PID != cur.PID || id.StartTicks != cur.StartTicks)
}
