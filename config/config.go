package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/qtune/qtune/policy"
)

// Config is the agent's configuration. Every field has a default; a
// config file overrides the defaults and flags override the file.
//
//	# /etc/qtune/agent.hcl
//	libvirt_uri       = "qemu:///system"   # or libvirt_socket, or qmp_dir
//	interval          = "10s"
//	idle_interval     = "10s"               # quiet VMs: sampled this often
//	policy_dir        = "/etc/qtune/policy.d"
//	state_dir         = "/var/lib/qtune"
//	listen            = "127.0.0.1:9477"   # or "unix:/run/qtune/qtune.sock"
//	web_config_file   = ""                  # Prometheus web config: TLS, basic auth
//	dry_run           = false
//	allow_passthrough = false               # QMP through libvirt (taints domains)
//	log_level         = "info"
//	log_format        = "json"              # or "text"
//	orphan_warn_after = "10m"               # an owned knob orphaned this long is a warning
//	limits {
//	  per_vm_per_hour     = 12
//	  per_host_per_minute = 30
//	  min_change          = 0.05
//	  l2_cache_budget     = "1GiB"
//	}
//	histograms {
//	  enabled       = true                  # unset: on while a rule reads a p95/p99 metric
//	  boundaries_ms = [1, 5, 10, 50, 100, 500]
//	}
//	mirror_dirs    = ["/srv/fast"]           # the only places a mirror may write
//	control_socket = "/run/qtune/control.sock"
//	control_group  = "qtune"                  # besides root, who may start and cancel jobs
//	jobs {
//	  host_budget      = 2                    # jobs at once on the host
//	  dir_budget       = 1                    # jobs at once writing into one directory
//	  windows          = ["01:00-05:00"]      # start jobs only then (local time)
//	  converge_timeout = "30m"                # then give up (write-blocking first, if allowed)
//	  allow_write_blocking = false            # QEMU can crash ending such a copy early
//	  max_attempts     = 3
//	  space_margin     = "1GiB"
//	}
//	fleet { endpoints = ["https://etcd-1:2379"] }  # fleet budgets: docs/fleet.md
//	budget "nfs-a" { dirs = ["/srv/nfs-a"], max_copies = 1, max_speed = "16MiB" }
//	doctor {
//	  enabled        = true
//	  interval       = "5m"                   # the cheap disk checks
//	  check_interval = "6h"                   # qemu-img check, one image at a time
//	  qemu_img       = "qemu-img"
//	}
type Config struct {
	LibvirtURI    string
	LibvirtSocket string
	LibvirtPidDir string
	QMPDir        string
	Interval      time.Duration
	// IdleInterval is how often a quiet VM is sampled: one whose QEMU
	// moves little I/O and on which no rule is pending or firing, no
	// knob is held and no job runs. At or below Interval (the default,
	// 0) every VM is sampled every interval.
	IdleInterval     time.Duration
	CallTimeout      time.Duration
	OrphanWarnAfter  time.Duration // an owned knob orphaned this long is a warning
	PolicyDir        string
	StateDir         string
	Listen           string
	WebConfigFile    string // Prometheus exporter-toolkit web config (TLS, basic auth) for the listener
	DryRun           bool
	Pprof            bool // Go profiling under /debug/pprof/ on a loopback listener
	AllowPassthrough bool
	LogLevel         string
	LogFormat        string
	Limits           LimitsConfig
	Histograms       []uint64 // boundaries in ns
	// HistogramsEnabled is histograms.enabled: nil (unset) turns latency
	// histograms on while a rule in force reads a metric that needs them.
	HistogramsEnabled *bool
	JobsConfig
	Doctor DoctorConfig
}

// LimitsConfig are the executor's limits as configured.
type LimitsConfig struct {
	PerVMPerHour     int
	PerHostPerMinute int
	MinChange        float64
	L2CacheBudget    uint64
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		LibvirtSocket: "/run/libvirt/libvirt-sock", LibvirtPidDir: "/run/libvirt/qemu",
		Interval: 10 * time.Second, CallTimeout: 5 * time.Second, OrphanWarnAfter: 10 * time.Minute,
		PolicyDir: "/etc/qtune/policy.d", StateDir: "/var/lib/qtune", Listen: "127.0.0.1:9477",
		LogLevel: "info", LogFormat: "json",
		Limits:     LimitsConfig{PerVMPerHour: 12, PerHostPerMinute: 30, MinChange: 0.05, L2CacheBudget: 1 << 30},
		Histograms: []uint64{1e6, 5e6, 10e6, 50e6, 100e6, 500e6},
		JobsConfig: defaultJobsConfig(),
		Doctor:     defaultDoctorConfig(),
	}
}

type fileConfig struct {
	LibvirtURI       *string         `hcl:"libvirt_uri,optional"`
	LibvirtSocket    *string         `hcl:"libvirt_socket,optional"`
	LibvirtPidDir    *string         `hcl:"libvirt_pid_dir,optional"`
	QMPDir           *string         `hcl:"qmp_dir,optional"`
	Interval         *string         `hcl:"interval,optional"`
	IdleInterval     *string         `hcl:"idle_interval,optional"`
	CallTimeout      *string         `hcl:"call_timeout,optional"`
	OrphanWarnAfter  *string         `hcl:"orphan_warn_after,optional"`
	PolicyDir        *string         `hcl:"policy_dir,optional"`
	StateDir         *string         `hcl:"state_dir,optional"`
	Listen           *string         `hcl:"listen,optional"`
	WebConfigFile    *string         `hcl:"web_config_file,optional"`
	DryRun           *bool           `hcl:"dry_run,optional"`
	AllowPassthrough *bool           `hcl:"allow_passthrough,optional"`
	LogLevel         *string         `hcl:"log_level,optional"`
	LogFormat        *string         `hcl:"log_format,optional"`
	Limits           *fileLimits     `hcl:"limits,block"`
	Histograms       *fileHistograms `hcl:"histograms,block"`
	MirrorDirs       []string        `hcl:"mirror_dirs,optional"`
	ControlSocket    *string         `hcl:"control_socket,optional"`
	ControlGroup     *string         `hcl:"control_group,optional"`
	Jobs             *fileJobs       `hcl:"jobs,block"`
	Doctor           *fileDoctor     `hcl:"doctor,block"`
	Fleet            *fileFleet      `hcl:"fleet,block"`
	Budgets          []fileBudget    `hcl:"budget,block"`
	Remain           hcl.Body        `hcl:",remain"`
}

type fileLimits struct {
	PerVMPerHour     *int     `hcl:"per_vm_per_hour,optional"`
	PerHostPerMinute *int     `hcl:"per_host_per_minute,optional"`
	MinChange        *float64 `hcl:"min_change,optional"`
	L2CacheBudget    *string  `hcl:"l2_cache_budget,optional"`
}

type fileHistograms struct {
	Enabled      *bool     `hcl:"enabled,optional"`
	BoundariesMs []float64 `hcl:"boundaries_ms,optional"`
}

// Load reads an HCL config file over the defaults. Every problem
// is reported with file:line:col.
func Load(path string) (Config, error) {
	c := Defaults()
	src, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return c, diagErr(diags)
	}
	var fc fileConfig
	// Content against the implied schema names unknown settings; the
	// decode names wrong types. Both are reported at once.
	schema, _ := gohcl.ImpliedBodySchema(&fc)
	_, unknown := f.Body.Content(schema)
	if diags := append(unknown, gohcl.DecodeBody(f.Body, nil, &fc)...); diags.HasErrors() {
		return c, diagErr(diags)
	}
	var errs []string
	str := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	dur := func(name string, dst *time.Duration, v *string) {
		if v == nil {
			return
		}
		d, err := policy.ParseDuration(*v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s: %v", path, name, err))
			return
		}
		*dst = d
	}
	str(&c.LibvirtURI, fc.LibvirtURI)
	str(&c.LibvirtSocket, fc.LibvirtSocket)
	str(&c.LibvirtPidDir, fc.LibvirtPidDir)
	str(&c.QMPDir, fc.QMPDir)
	str(&c.PolicyDir, fc.PolicyDir)
	str(&c.StateDir, fc.StateDir)
	str(&c.Listen, fc.Listen)
	str(&c.WebConfigFile, fc.WebConfigFile)
	str(&c.LogLevel, fc.LogLevel)
	str(&c.LogFormat, fc.LogFormat)
	dur("interval", &c.Interval, fc.Interval)
	dur("idle_interval", &c.IdleInterval, fc.IdleInterval)
	dur("call_timeout", &c.CallTimeout, fc.CallTimeout)
	dur("orphan_warn_after", &c.OrphanWarnAfter, fc.OrphanWarnAfter)
	if fc.DryRun != nil {
		c.DryRun = *fc.DryRun
	}
	if fc.AllowPassthrough != nil {
		c.AllowPassthrough = *fc.AllowPassthrough
	}
	if l := fc.Limits; l != nil {
		if l.PerVMPerHour != nil {
			c.Limits.PerVMPerHour = *l.PerVMPerHour
		}
		if l.PerHostPerMinute != nil {
			c.Limits.PerHostPerMinute = *l.PerHostPerMinute
		}
		if l.MinChange != nil {
			c.Limits.MinChange = *l.MinChange
		}
		if l.L2CacheBudget != nil {
			n, err := policy.ParseSize(*l.L2CacheBudget)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: limits.l2_cache_budget: %v", path, err))
			}
			c.Limits.L2CacheBudget = n
		}
	}
	if h := fc.Histograms; h != nil {
		c.HistogramsEnabled = h.Enabled
		if len(h.BoundariesMs) > 0 {
			c.Histograms = nil
		}
		for _, ms := range h.BoundariesMs {
			c.Histograms = append(c.Histograms, uint64(ms*1e6))
		}
	}
	errs = append(errs, c.JobsConfig.load(&fc, path)...)
	errs = append(errs, c.Doctor.load(fc.Doctor, path)...)
	if len(errs) > 0 {
		return c, errors.New(strings.Join(errs, "\n"))
	}
	return c, nil
}

func diagErr(ds hcl.Diagnostics) error {
	var lines []string
	for _, d := range ds {
		pos := ""
		if d.Subject != nil {
			pos = fmt.Sprintf("%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		lines = append(lines, pos+d.Summary+": "+d.Detail)
	}
	return errors.New(strings.Join(lines, "\n"))
}

// Validate checks the settings that files and flags both feed.
func (c Config) Validate() error {
	var errs []string
	if c.QMPDir != "" && c.LibvirtURI != "" {
		errs = append(errs, "qmp_dir and libvirt_uri exclude each other: one agent watches one kind of VM")
	}
	if c.Interval < time.Second {
		errs = append(errs, fmt.Sprintf("interval %v is too short (at least 1s)", c.Interval))
	}
	if c.IdleInterval < 0 {
		errs = append(errs, fmt.Sprintf("idle_interval %v must not be negative", c.IdleInterval))
	}
	if c.OrphanWarnAfter <= 0 {
		errs = append(errs, fmt.Sprintf("orphan_warn_after %v must be positive", c.OrphanWarnAfter))
	}
	if c.CallTimeout <= 0 || c.CallTimeout > c.Interval {
		errs = append(errs, fmt.Sprintf("call_timeout %v must be positive and at most the interval %v", c.CallTimeout, c.Interval))
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log_level %q is not one of trace, debug, info, warn, error", c.LogLevel))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Sprintf("log_format %q is not json or text", c.LogFormat))
	}
	if c.Limits.MinChange < 0 || c.Limits.MinChange >= 1 {
		errs = append(errs, "limits.min_change must be in [0, 1)")
	}
	if c.StateDir == "" || c.PolicyDir == "" {
		errs = append(errs, "state_dir and policy_dir must be set")
	}
	errs = append(errs, c.JobsConfig.validate()...)
	errs = append(errs, c.Doctor.validate()...)
	if len(errs) > 0 {
		return errors.New("config: " + strings.Join(errs, "; "))
	}
	return nil
}
