package policy

import (
	"fmt"
	"strings"
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
	KnobConvert  Knob = "convert"
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

// Layout is how a new image is laid out; zero fields are left to qemu-img
// (or, for a copy, taken from the source).
type Layout struct {
	Format          string `json:"format,omitempty"` // qcow2 or raw
	ClusterSize     uint64 `json:"cluster_size,omitempty"`
	Preallocation   string `json:"preallocation,omitempty"`
	ExtendedL2      *bool  `json:"extended_l2,omitempty"`
	CompressionType string `json:"compression_type,omitempty"` // zlib or zstd
}

func (l Layout) String() string {
	parts := []string{orDefault(l.Format, "qcow2")}
	if l.ClusterSize != 0 {
		parts = append(parts, fmt.Sprintf("cluster_size=%d", l.ClusterSize))
	}
	if l.Preallocation != "" {
		parts = append(parts, "preallocation="+l.Preallocation)
	}
	if l.ExtendedL2 != nil {
		parts = append(parts, fmt.Sprintf("extended_l2=%v", *l.ExtendedL2))
	}
	if l.CompressionType != "" {
		parts = append(parts, "compression_type="+l.CompressionType)
	}
	return strings.Join(parts, " ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// MirrorSpec asks for a live copy of the disk to other storage.
type MirrorSpec struct {
	TargetDir string `json:"target_dir"`
	Layout
	Speed    uint64 `json:"speed,omitempty"`
	CopyMode string `json:"copy_mode,omitempty"`
}

// ConvertSpec asks for a live rewrite of the disk into a new image with
// another layout, beside the old one.
type ConvertSpec struct {
	Layout
	Speed    uint64 `json:"speed,omitempty"`
	CopyMode string `json:"copy_mode,omitempty"`
}

// Action is the desired state of one knob; exactly one field is set.
// Built-in kinds have their typed field; a kind registered elsewhere
// keeps its spec in Other (see ActionKind).
type Action struct {
	Throttle *sample.Throttle `json:"throttle,omitempty"`
	Cache    *CacheSpec       `json:"cache,omitempty"`
	L2Cache  *L2Spec          `json:"l2_cache,omitempty"`
	Stream   *StreamSpec      `json:"stream,omitempty"`
	Mirror   *MirrorSpec      `json:"mirror,omitempty"`
	Convert  *ConvertSpec     `json:"convert,omitempty"`
	Other    any              `json:"other,omitempty"`
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
