package policy

import (
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// Knob names one tunable of a disk. A rule owns exactly one knob per disk it
// matches.
type Knob string

const (
	KnobThrottle Knob = "throttle"
	KnobCache    Knob = "cache"
	KnobL2Cache  Knob = "l2_cache"
	KnobStream   Knob = "stream"
	KnobMirror   Knob = "mirror"
)

// Mode says whether a rule acts or only reports.
type Mode string

const (
	ModeEnforce   Mode = "enforce"
	ModeRecommend Mode = "recommend"
)

// CacheSpec is the desired host cache mode of a disk's file node.
type CacheSpec struct {
	Direct      bool `json:"direct"`
	NoFlush     bool `json:"no_flush"`
	AllowUnsafe bool `json:"allow_unsafe,omitempty"`
}

// L2Spec is the desired qcow2 metadata cache. With Auto the size is the one
// that covers the whole disk, clamped by Max.
type L2Spec struct {
	Auto          bool          `json:"auto"`
	Size          uint64        `json:"size,omitempty"`
	Max           uint64        `json:"max,omitempty"`
	CleanInterval time.Duration `json:"clean_interval,omitempty"`
}

// StreamSpec asks for a block-stream that flattens the backing chain.
type StreamSpec struct {
	Speed uint64 `json:"speed,omitempty"` // bytes/s, 0 = unlimited
	Base  string `json:"base,omitempty"`
}

// MirrorSpec asks for a live copy of the disk to other storage.
type MirrorSpec struct {
	TargetDir     string `json:"target_dir"`
	Format        string `json:"format,omitempty"`
	ClusterSize   uint64 `json:"cluster_size,omitempty"`
	Preallocation string `json:"preallocation,omitempty"`
	Speed         uint64 `json:"speed,omitempty"`
	CopyMode      string `json:"copy_mode,omitempty"`
}

// Action is the desired state of one knob; exactly one field is set.
type Action struct {
	Throttle *sample.Throttle `json:"throttle,omitempty"`
	Cache    *CacheSpec       `json:"cache,omitempty"`
	L2Cache  *L2Spec          `json:"l2_cache,omitempty"`
	Stream   *StreamSpec      `json:"stream,omitempty"`
	Mirror   *MirrorSpec      `json:"mirror,omitempty"`
}

// Decision is what evaluation hands the tuning executor: a rule wants a
// knob of a disk in a state, or (Revert) wants it back as it was before the
// rule first changed it.
type Decision struct {
	At       time.Time          `json:"at"`
	Rule     string             `json:"rule"`
	Priority int                `json:"priority"`
	Mode     Mode               `json:"mode"`
	VM       string             `json:"vm"`
	Disk     string             `json:"disk"`
	Knob     Knob               `json:"knob"`
	Revert   bool               `json:"revert,omitempty"`
	Action   Action             `json:"action"`
	Inputs   map[string]float64 `json:"inputs,omitempty"` // the metric values that led here
	Cooldown time.Duration      `json:"cooldown,omitempty"`
	Persist  bool               `json:"persist,omitempty"`
	Reason   string             `json:"reason,omitempty"` // one line a human can read
}
