package api

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// The state of an owned knob this cycle (OwnedStatus.State).
const (
	OwnedHeld      = "held"      // its rule fires; qtune keeps it
	OwnedReleasing = "releasing" // its rule stopped firing; restored after clear_after
	OwnedOrphaned  = "orphaned"  // its rule is gone or its VM unreachable: retried with backoff
	OwnedDrifted   = "drifted"   // someone else changed it; qtune let go and leaves it alone
	OwnedSettled   = "settled"   // restored, handed over or forgotten this cycle; the record is gone
)

// OwnedStatus is an owned knob with its state this cycle.
type OwnedStatus struct {
	Owned
	State  string    `json:"state"`
	Reason string    `json:"state_reason,omitempty"`
	Since  time.Time `json:"state_since"` // orphaned: since when
	// NotReadBack: QEMU cannot report this knob (a qcow2 cache size):
	// its value here is qtune's record, not a reading.
	NotReadBack bool `json:"not_read_back,omitempty"`
	// IdentityNote: why the VM's identity cannot be read now; it is
	// then matched by its name alone.
	IdentityNote string `json:"identity_note,omitempty"`
	// RecordMismatch: the record the VM carries (libvirt domain
	// metadata) and this one disagree, and how.
	RecordMismatch string `json:"record_mismatch,omitempty"`
}

// Target is one disk of one VM.
type Target struct {
	VM   string `json:"vm"`
	Disk string `json:"disk"`
}

func (t Target) String() string { return t.VM + "/" + t.Disk }

// Owned is the state store's record of a knob qtune changed.
type Owned struct {
	Target
	Knob       policy.Knob   `json:"knob"`
	Rule       string        `json:"rule"`
	Original   KnobState     `json:"original"`
	Applied    KnobState     `json:"applied"`
	Phase      string        `json:"phase"`
	Since      time.Time     `json:"since"`       // first change
	LastChange time.Time     `json:"last_change"` // starts the cooldown
	Cooldown   time.Duration `json:"cooldown"`
	Persist    bool          `json:"persist,omitempty"`
	// VMID is the VM the knob was taken on; zero in records written
	// before qtune kept it.
	VMID sample.VMIdentity `json:"vm_identity,omitzero"`
	// Host is where the change was made, Seq its place among the changes
	// of the VM (a libvirt domain carries both in its metadata).
	Host string `json:"host,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
}

// KnobState is the value of one knob; one field is set. A knob kind
// without a typed field carries its value as JSON in Raw.
type KnobState struct {
	Throttle *sample.Throttle `json:"throttle,omitempty"`
	Cache    *CacheState      `json:"cache,omitempty"`
	L2       *L2State         `json:"l2,omitempty"`
	Raw      json.RawMessage  `json:"raw,omitempty"`
}

// CacheState is a disk's host cache flags (on its file node).
type CacheState struct {
	Direct  bool `json:"direct"`
	NoFlush bool `json:"no_flush"`
}

// L2State is a qcow2 disk's L2 cache and what full coverage needs.
type L2State struct {
	Size    uint64        `json:"size"`
	Needed  uint64        `json:"needed,omitempty"`
	Limit   uint64        `json:"limit,omitempty"`
	Defined *L2Definition `json:"defined,omitempty"`
}

// L2Definition is a disk's <metadata_cache> element of a persistent
// libvirt domain definition, as written there.
type L2Definition struct {
	MetadataCache string `json:"metadata_cache"`
	Unknown       bool   `json:"unknown,omitempty"`
}

// String prints the setting as the audit log does.
func (s KnobState) String() string {
	switch {
	case s.Throttle != nil:
		return s.Throttle.Limits()
	case s.Cache != nil:
		return fmt.Sprintf("direct=%v no-flush=%v", s.Cache.Direct, s.Cache.NoFlush)
	case s.L2 != nil:
		return fmt.Sprintf("l2-cache-size=%d", s.L2.Size)
	case s.Raw != nil:
		return string(s.Raw)
	}
	return "unset"
}
