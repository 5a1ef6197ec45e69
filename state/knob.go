package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/qtune/qtune/internal/sample"
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

// KnobState is the value of one knob, in the one form the store keeps
// it: the value's JSON under its kind's key, {"throttle": {...}},
// {"cache": {...}}, {"l2": {...}}, or {"raw": ...} for a kind with no
// key of its own. The zero KnobState is "unset" ({}). Typed accessors
// (Throttle, Cache, L2) decode it; a new kind needs no field here.
type KnobState struct {
	key string
	val json.RawMessage
}

// Keys of the built-in kinds' values, as stored since the first release.
const (
	keyThrottle = "throttle"
	keyCache    = "cache"
	keyL2       = "l2"
	keyRaw      = "raw"
)

// stateKind is how values under one key compare and read.
type stateKind struct {
	equal func(a, b json.RawMessage) bool
	text  func(v json.RawMessage) string
}

var stateKinds = struct {
	sync.RWMutex
	by map[string]stateKind
}{by: map[string]stateKind{
	keyThrottle: {equal: equalAs[sample.Throttle](func(a, b sample.Throttle) bool { return a == b }),
		text: func(v json.RawMessage) string { return throttleString(v) }},
	keyCache: {equal: equalAs[CacheState](func(a, b CacheState) bool { return a == b }),
		text: func(v json.RawMessage) string {
			var c CacheState
			json.Unmarshal(v, &c)
			return fmt.Sprintf("direct=%v no-flush=%v", c.Direct, c.NoFlush)
		}},
	// L2's Needed, Limit and Defined are facts, not the setting.
	keyL2: {equal: equalAs[L2State](func(a, b L2State) bool { return a.Size == b.Size }),
		text: func(v json.RawMessage) string {
			var l L2State
			json.Unmarshal(v, &l)
			return fmt.Sprintf("l2-cache-size=%d", l.Size)
		}},
}}

// RegisterKey sets how values stored under key compare (equal: the
// same setting, facts aside) and read in logs and status (text). A kind
// that registers none compares its JSON byte for byte and prints it as
// it is. Registering a key twice is a programming error.
func RegisterKey(key string, equal func(a, b json.RawMessage) bool, text func(v json.RawMessage) string) {
	stateKinds.Lock()
	defer stateKinds.Unlock()
	if _, dup := stateKinds.by[key]; dup || key == "" {
		panic(fmt.Sprintf("state: knob state key %q registered twice or empty", key))
	}
	stateKinds.by[key] = stateKind{equal: equal, text: text}
}

// UnregisterKey removes a key; tests that register one use it to clean up.
func UnregisterKey(key string) {
	stateKinds.Lock()
	defer stateKinds.Unlock()
	delete(stateKinds.by, key)
}

func equalAs[T any](eq func(a, b T) bool) func(a, b json.RawMessage) bool {
	return func(a, b json.RawMessage) bool {
		var x, y T
		if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
			return bytes.Equal(a, b)
		}
		return eq(x, y)
	}
}

// Of is v as the state of a knob kind whose values are stored under key
// (a kind registered elsewhere picks a key of its own; Raw uses "raw").
func Of(key string, v any) (KnobState, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return KnobState{}, fmt.Errorf("knob state %s: %w", key, err)
	}
	return KnobState{key: key, val: b}, nil
}

// Raw is v as the state of a knob kind that has no key of its own.
func Raw(v any) (KnobState, error) { return Of(keyRaw, v) }

func must(key string, v any) KnobState {
	s, err := Of(key, v)
	if err != nil {
		panic(err) // the built-in types always marshal
	}
	return s
}

// OfThrottle is a throttle's state.
func OfThrottle(t sample.Throttle) KnobState { return must(keyThrottle, t) }

// OfCache is a cache mode's state.
func OfCache(c CacheState) KnobState { return must(keyCache, c) }

// OfL2 is an L2 cache's state.
func OfL2(l L2State) KnobState { return must(keyL2, l) }

// Key is the kind key of the value, "" when unset.
func (s KnobState) Key() string { return s.key }

// Value is the value's JSON, nil when unset.
func (s KnobState) Value() json.RawMessage { return s.val }

// IsZero reports an unset state.
func (s KnobState) IsZero() bool { return s.key == "" }

// Decode reads the value under key into v; false when s holds no value
// under key or it does not decode.
func (s KnobState) Decode(key string, v any) bool {
	return s.key == key && json.Unmarshal(s.val, v) == nil
}

func decodeAs[T any](s KnobState, key string) *T {
	var v T
	if !s.Decode(key, &v) {
		return nil
	}
	return &v
}

// Throttle is the throttle held, nil when s is not a throttle.
func (s KnobState) Throttle() *sample.Throttle { return decodeAs[sample.Throttle](s, keyThrottle) }

// Cache is the cache mode held, nil when s is not a cache mode.
func (s KnobState) Cache() *CacheState { return decodeAs[CacheState](s, keyCache) }

// L2 is the L2 cache held, nil when s is not an L2 cache.
func (s KnobState) L2() *L2State { return decodeAs[L2State](s, keyL2) }

// RawValue is the value of a kind without a key of its own, nil otherwise.
func (s KnobState) RawValue() json.RawMessage {
	if s.key != keyRaw {
		return nil
	}
	return s.val
}

// Equal compares the settings, as the kind of the value compares them.
func (s KnobState) Equal(o KnobState) bool {
	if s.key != o.key {
		return false
	}
	stateKinds.RLock()
	k, ok := stateKinds.by[s.key]
	stateKinds.RUnlock()
	if ok && k.equal != nil {
		return k.equal(s.val, o.val)
	}
	return bytes.Equal(s.val, o.val)
}

func (s KnobState) String() string {
	if s.key == "" {
		return "unset"
	}
	stateKinds.RLock()
	k, ok := stateKinds.by[s.key]
	stateKinds.RUnlock()
	if ok && k.text != nil {
		return k.text(s.val)
	}
	return string(s.val)
}

// MarshalJSON writes {key: value}, or {} when unset.
func (s KnobState) MarshalJSON() ([]byte, error) {
	if s.key == "" {
		return []byte("{}"), nil
	}
	k, _ := json.Marshal(s.key)
	var b bytes.Buffer
	b.WriteByte('{')
	b.Write(k)
	b.WriteByte(':')
	b.Write(s.val)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads {key: value}; {} and null are unset.
func (s *KnobState) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("knob state: %w", err)
	}
	*s = KnobState{}
	for k, v := range m {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		if s.key != "" {
			return errors.New("knob state: more than one value (" + s.key + ", " + k + ")")
		}
		s.key, s.val = k, append(json.RawMessage(nil), v...)
	}
	return nil
}

func throttleString(raw json.RawMessage) string {
	var t sample.Throttle
	json.Unmarshal(raw, &t)
	return t.Limits()
}
