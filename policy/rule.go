package policy

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Defaults for a rule's timing when the file does not say.
const (
	DefaultFor      = time.Minute
	DefaultCooldown = 5 * time.Minute
)

// Match selects the disks a rule applies to; an empty field matches all.
// Domain, Disk and Path are globs (path.Match syntax); Meta matches libvirt
// domain metadata keys to globs.
type Match struct {
	Domain string            `json:"domain,omitempty"`
	Disk   string            `json:"disk,omitempty"`
	Format string            `json:"format,omitempty"`
	Path   string            `json:"path,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
}

// Rule is one validated policy rule.
type Rule struct {
	Name        string
	Description string
	Range       hcl.Range // where the rule is defined
	Match       Match
	When        hcl.Expression
	WhenText    string // the expression as written
	// ReleaseWhen, when set, is what lets a firing rule go (held for
	// clear_after) instead of when turning false: hysteresis, or a way
	// out that the rule's own action does not decide.
	ReleaseWhen hcl.Expression
	ReleaseText string
	For         time.Duration
	ClearAfter  time.Duration
	Cooldown    time.Duration
	Mode        Mode
	Priority    int
	Windows     []Window
	Persist     bool
	AllowUnsafe bool
	Knob        Knob
	Action      Action

	// refs are the metrics the condition reads; sites its window
	// function calls.
	refs  []string
	sites []windowSite
	// censors are the comparison operands a throttle can hold down.
	censors []censorSite
	bad     bool // has errors
	// hash identifies the rule's definition, for reloads.
	hash string
}

// windowSite is one call of a window function in a condition. The call is
// renamed to a per-site function so that its value, computed from
// history, can be handed to HCL (functions receive values, not the
// traversal they came from).
type windowSite struct {
	fn     string // avg_over, ...
	metric string
	window time.Duration
	id     string // the call's new name
}

// Set is a loaded policy: every rule of a directory.
type Set struct {
	Rules []*Rule
	Files []string
}
