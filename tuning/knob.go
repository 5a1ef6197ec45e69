// Package tuning is the only path by which qtune changes a VM. Its
// Executor takes policy decisions and, for each, reads the knob, refuses
// what breaks a safety limit, writes its intent and the knob's original
// value to the state store before acting, applies through a Backend,
// reads back to verify, and records the outcome. A revert restores the
// recorded original only if the knob still holds what qtune set;
// otherwise someone else changed it, and qtune reports the drift and
// lets go instead of fighting.
//
// Block jobs (stream, mirror, live convert) are one-shot and long: the
// executor hands their decisions, after its recommend/dry-run gate and
// audit, to a JobManager that keeps each job as a durable state machine
// in the same store (see jobs.go) and drives it through a JobDriver.
package tuning

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// Target is one disk of one VM.
type Target struct {
	VM   string `json:"vm"`
	Disk string `json:"disk"`
}

func (t Target) String() string { return t.VM + "/" + t.Disk }

// CacheState is a disk's host cache flags (on its file node).
type CacheState struct {
	Direct  bool `json:"direct"`
	NoFlush bool `json:"no_flush"`
}

// L2State is a qcow2 disk's L2 cache and what full coverage needs.
type L2State struct {
	Size   uint64 `json:"size"`
	Needed uint64 `json:"needed,omitempty"` // from the image; not part of the setting
	// Limit is the node's cache-size (under libvirt: the disk's
	// <metadata_cache><max_size>), 0 when unset: QEMU refuses an
	// l2-cache-size above it. A fact of the node, not part of the setting.
	Limit uint64 `json:"limit,omitempty"`
	// Defined is what a libvirt domain's persistent definition held for
	// the disk when the state was read, so that the revert of a
	// persisted change puts the definition back as it was. Nil where
	// there is no definition (plain QEMU) and in records written before
	// qtune kept it. Not part of the setting.
	Defined *L2Definition `json:"defined,omitempty"`
}

// L2Definition is a disk's <metadata_cache> element of a persistent
// domain definition, exactly as written there; "" when it had none.
type L2Definition struct {
	MetadataCache string `json:"metadata_cache"`
	// Unknown marks the revert of a record that predates Defined: what
	// the definition held before is not known (see restoring).
	Unknown bool `json:"unknown,omitempty"`
}

// KnobState is the value of one knob; exactly one field is set. A knob
// kind without a typed field keeps its value as JSON in Raw, so that it
// survives the state store as it was (see RawState).
type KnobState struct {
	Throttle *sample.Throttle `json:"throttle,omitempty"`
	Cache    *CacheState      `json:"cache,omitempty"`
	L2       *L2State         `json:"l2,omitempty"`
	Raw      json.RawMessage  `json:"raw,omitempty"`
}

// RawState is v as the state of a knob kind without a typed field.
func RawState(v any) (KnobState, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return KnobState{}, fmt.Errorf("knob state: %w", err)
	}
	return KnobState{Raw: b}, nil
}

// Equal compares the settings (L2's Needed is a fact, not a setting).
func (s KnobState) Equal(o KnobState) bool {
	switch {
	case s.Throttle != nil || o.Throttle != nil:
		return s.Throttle != nil && o.Throttle != nil && *s.Throttle == *o.Throttle
	case s.Cache != nil || o.Cache != nil:
		return s.Cache != nil && o.Cache != nil && *s.Cache == *o.Cache
	case s.L2 != nil || o.L2 != nil:
		return s.L2 != nil && o.L2 != nil && s.L2.Size == o.L2.Size
	}
	return bytes.Equal(s.Raw, o.Raw)
}

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

// Backend reads and sets knobs of a hypervisor. Implementations: QMP on a
// socket, libvirt (native API for throttles, passthrough for reopen).
type Backend interface {
	Read(ctx context.Context, t Target, k policy.Knob) (KnobState, error)
	Apply(ctx context.Context, t Target, k policy.Knob, s KnobState, persist bool) error
}
