package api

import (
	"time"

	"github.com/qtune/qtune/internal/buildinfo"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// Status is what GET /v1/status returns and qtune status prints.
type Status struct {
	Backend       string             `json:"backend"`
	Connected     bool               `json:"connected"`
	Reconnects    uint64             `json:"reconnects"`
	DryRun        bool               `json:"dry_run"`
	StoreError    string             `json:"store_error,omitempty"` // the state store was refused: nothing is changed
	Interval      string             `json:"interval"`
	LastCycle     time.Time          `json:"last_cycle"`
	CycleDuration string             `json:"cycle_duration"`
	Policy        PolicyStatus       `json:"policy"`
	Histograms    HistogramStatus    `json:"histograms"`
	VMs           []VMStatus         `json:"vms"`
	Rules         []policy.StateInfo `json:"rules"`
	Owned         []OwnedStatus      `json:"owned"`
	OwnedError    string             `json:"owned_error,omitempty"`   // records the store could not read
	OwnedSettled  map[string]int     `json:"owned_settled,omitempty"` // by knob: records settled in the last cycle
	Jobs          []Job              `json:"jobs"`                    // block jobs, newest first
	Actions       []ActionStatus     `json:"actions"`                 // the latest, newest last
	Tainted       []string           `json:"tainted,omitempty"`
	// BackendCapabilities is what the backend was found to offer: under
	// libvirt its version, its QEMU's, and whether the bulk stats carry
	// timed block statistics and latency histograms.
	BackendCapabilities []string          `json:"backend_capabilities,omitempty"`
	Errors              map[string]string `json:"errors,omitempty"` // latest sample error per VM
	// Findings are the disk checks' findings worse than ok, worst first.
	Findings []FindingStatus `json:"findings,omitempty"`
	// Version is the running agent's build, which after an upgrade may
	// differ from the installed binary's until the service restarts.
	Version buildinfo.Info `json:"version,omitzero"`
}

// Where the policy in force came from (PolicyStatus.Source).
const (
	PolicyFromFiles = "files"     // the policy directory, loaded cleanly
	PolicyFromStore = "last-good" // the last clean set, from the state store
	PolicyNone      = "none"      // nothing loads: no rules, nothing released
)

// PolicyStatus says which policy is in force and whether the last load
// worked.
type PolicyStatus struct {
	Dir   string   `json:"dir"`
	Rules []string `json:"rules"`
	// Defs identify each rule's definition, so that a policy directory
	// can be compared with what runs (qtune policy check --against-agent).
	Defs     []policy.RuleDef `json:"defs"`
	LoadedAt time.Time        `json:"loaded_at"`
	// Source is where the set in force came from: "files", "last-good"
	// (the policy directory does not load; the last clean set, from
	// the state store) or "none" (nothing loads; no rules, nothing
	// released).
	Source      string    `json:"source"`
	Error       string    `json:"error,omitempty"`
	BrokenSince time.Time `json:"broken_since,omitempty"`
}

// HistogramStatus says whether qtune keeps QEMU latency histograms on the
// disks it samples, and why.
type HistogramStatus struct {
	On bool `json:"on"`
	// Why is "config" (histograms { enabled = true }), "rule NAME" (a
	// rule reads a p95/p99 metric and the config leaves enabled unset),
	// "disabled by config", "no rule needs them", or why the backend
	// cannot have them.
	Why string `json:"why"`
	// Unknown are the rules whose p95/p99 metrics stay unknown because
	// histograms are off.
	Unknown []string `json:"unknown,omitempty"`
}

// VMStatus is one VM's disks as last sampled.
type VMStatus struct {
	Name string `json:"name"`
	// State and StateReason are libvirt's (running/booted,
	// paused/ioerror, ...); empty where the backend does not say.
	State       string `json:"state,omitempty"`
	StateReason string `json:"state_reason,omitempty"`
	// Cadence is how often the VM is sampled ("1s", "10s"), and
	// CadenceReason why: busy, quiet, watched (a rule pending or firing,
	// a knob held, a job), first sample, no signal (its QEMU process
	// could not be read), every VM every interval.
	Cadence       string       `json:"cadence,omitempty"`
	CadenceReason string       `json:"cadence_reason,omitempty"`
	LastSampled   time.Time    `json:"last_sampled,omitzero"`
	Disks         []DiskStatus `json:"disks"`
	// Capabilities is what the VM's QEMU was found to offer, from its
	// QMP schema ("blockdev-reopen", "no block-job-change", ...); empty
	// when not read (under libvirt, see Status.BackendCapabilities).
	Capabilities []string `json:"capabilities,omitempty"`
	// Migration says the domain is in a live migration, during which
	// qtune changes nothing on it.
	Migration string `json:"migration,omitempty"`
	// MigrationBlocked names the qtune copies whose block job makes
	// libvirt refuse to migrate the domain.
	MigrationBlocked string `json:"migration_blocked,omitempty"`
}

// DiskStatus is one disk's latest figures.
type DiskStatus struct {
	Name        string           `json:"name"`
	Format      string           `json:"format,omitempty"`
	Cache       string           `json:"cache"`
	Throttle    *sample.Throttle `json:"throttle,omitempty"`
	L2CacheSize uint64           `json:"l2_cache_size,omitempty"` // qcow2; 0 when not known
	// Recorded names the knobs whose figure here is qtune's record of
	// what it set, not a reading (QEMU cannot report an L2 cache size).
	Recorded     []string `json:"recorded,omitempty"`
	ReadIOPS     float64  `json:"read_iops"`
	WriteIOPS    float64  `json:"write_iops"`
	ReadBPS      float64  `json:"read_bps"`
	WriteBPS     float64  `json:"write_bps"`
	ReadLatency  *float64 `json:"read_latency_ms"`
	WriteLatency *float64 `json:"write_latency_ms"`
	QueueDepth   float64  `json:"queue_depth"`
	// LatencySource is where the latency figures come from: counters
	// (averages only), timed-stats (libvirt's <statistics>: also the
	// longest read and write of each interval) or histogram (also
	// percentiles).
	LatencySource string `json:"latency_source,omitempty"`
	// ReadMax, WriteMax: the longest read and write of the last timed
	// interval, with timed-stats; nil otherwise.
	ReadMax   *float64  `json:"read_latency_max_ms,omitempty"`
	WriteMax  *float64  `json:"write_latency_max_ms,omitempty"`
	SampledAt time.Time `json:"sampled_at"`
}

// ActionStatus is one executor outcome.
type ActionStatus struct {
	At     time.Time `json:"at"`
	Rule   string    `json:"rule"`
	VM     string    `json:"vm"`
	Disk   string    `json:"disk"`
	Knob   string    `json:"knob"`
	Result string    `json:"result"`
	Before string    `json:"before,omitempty"`
	After  string    `json:"after,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// FindingStatus is one finding of the agent's disk checks, in status.
type FindingStatus struct {
	VM       string            `json:"vm"`
	Disk     string            `json:"disk"`
	Check    string            `json:"check"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
	Evidence map[string]string `json:"evidence,omitempty"`
	At       time.Time         `json:"at"`
}

// Cycle is one cycle's points (GET /v1/history), for qtune plan.
type Cycle struct {
	At     time.Time      `json:"at"`
	Points []sample.Point `json:"points"`
}

// SourceError is the key in Status.Errors of a failure of the whole
// source (libvirt unreachable), not of one VM.
const SourceError = "libvirt"
