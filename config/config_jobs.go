package config

import (
	"fmt"
	"os/user"
	"path/filepath"
	"time"

	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/policy"
)

// JobsConfig is how the agent runs block jobs and who may ask for them by
// hand.
type JobsConfig struct {
	MirrorDirs      []string // the only directories a mirror may write into
	ControlSocket   string   // unix socket for commands that change things
	ControlGroup    string   // group allowed on it besides root; empty = root only
	HostBudget      int
	DirBudget       int
	Windows         []policy.Window
	ConvergeTimeout time.Duration
	MaxAttempts     int
	SpaceMargin     uint64
	// AllowWriteBlocking lets copies run write-blocking (off: QEMU can
	// crash when such a copy ends before it is ready; see docs/jobs.md).
	AllowWriteBlocking bool
	// Fleet is the fleet budgets on etcd (docs/fleet.md); nil without a
	// fleet block. FleetHost is this host's name there.
	Fleet     *fleet.Config
	FleetHost string
}

func defaultJobsConfig() JobsConfig {
	return JobsConfig{ControlSocket: "/run/qtune/control.sock", HostBudget: 2, DirBudget: 1,
		ConvergeTimeout: 30 * time.Minute, MaxAttempts: 3, SpaceMargin: 1 << 30}
}

type fileJobs struct {
	HostBudget      *int     `hcl:"host_budget,optional"`
	DirBudget       *int     `hcl:"dir_budget,optional"`
	Windows         []string `hcl:"windows,optional"`
	ConvergeTimeout *string  `hcl:"converge_timeout,optional"`
	MaxAttempts     *int     `hcl:"max_attempts,optional"`
	SpaceMargin     *string  `hcl:"space_margin,optional"`

	AllowWriteBlocking *bool `hcl:"allow_write_blocking,optional"`
}

func (c *JobsConfig) load(fc *fileConfig, path string) []string {
	var errs []string
	errs = append(errs, c.loadFleet(fc)...)
	c.MirrorDirs = append(c.MirrorDirs, fc.MirrorDirs...)
	if fc.ControlSocket != nil {
		c.ControlSocket = *fc.ControlSocket
	}
	if fc.ControlGroup != nil {
		c.ControlGroup = *fc.ControlGroup
	}
	j := fc.Jobs
	if j == nil {
		return errs
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setInt(&c.HostBudget, j.HostBudget)
	setInt(&c.DirBudget, j.DirBudget)
	setInt(&c.MaxAttempts, j.MaxAttempts)
	if j.AllowWriteBlocking != nil {
		c.AllowWriteBlocking = *j.AllowWriteBlocking
	}
	for _, w := range j.Windows {
		win, err := policy.ParseWindow(w)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: jobs.windows: %v", path, err))
			continue
		}
		c.Windows = append(c.Windows, win)
	}
	if j.ConvergeTimeout != nil {
		d, err := policy.ParseDuration(*j.ConvergeTimeout)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: jobs.converge_timeout: %v", path, err))
		}
		c.ConvergeTimeout = d
	}
	if j.SpaceMargin != nil {
		n, err := policy.ParseSize(*j.SpaceMargin)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: jobs.space_margin: %v", path, err))
		}
		c.SpaceMargin = n
	}
	return errs
}

func (c JobsConfig) validate() []string {
	var errs []string
	for _, d := range c.MirrorDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
			errs = append(errs, fmt.Sprintf("mirror_dirs: %q must be an absolute directory other than /", d))
		}
	}
	if c.HostBudget < 1 || c.DirBudget < 1 || c.MaxAttempts < 1 {
		errs = append(errs, "jobs: host_budget, dir_budget and max_attempts must be at least 1")
	}
	if c.ConvergeTimeout < time.Minute {
		errs = append(errs, fmt.Sprintf("jobs.converge_timeout %v is too short (at least 1m)", c.ConvergeTimeout))
	}
	if c.ControlSocket != "" && !filepath.IsAbs(c.ControlSocket) {
		errs = append(errs, fmt.Sprintf("control_socket %q must be an absolute path", c.ControlSocket))
	}
	if c.ControlGroup != "" {
		if _, err := user.LookupGroup(c.ControlGroup); err != nil {
			errs = append(errs, fmt.Sprintf("control_group %q: %v", c.ControlGroup, err))
		}
	}
	return errs
}
