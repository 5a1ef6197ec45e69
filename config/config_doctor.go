package config

import (
	"fmt"
	"time"

	"github.com/qtune/qtune/policy"
)

// DoctorConfig is how the agent runs qtune doctor's checks on the disks it
// samples: the cheap ones (image header, FIEMAP, statfs, what the last
// sample shows) every Interval, qemu-img check (it reads all of an
// image's metadata) at most every CheckInterval per image, one image at
// a time.
type DoctorConfig struct {
	Enabled       bool
	Interval      time.Duration
	CheckInterval time.Duration
	QemuImg       string
}

func defaultDoctorConfig() DoctorConfig {
	return DoctorConfig{Enabled: true, Interval: 5 * time.Minute, CheckInterval: 6 * time.Hour, QemuImg: "qemu-img"}
}

type fileDoctor struct {
	Enabled       *bool   `hcl:"enabled,optional"`
	Interval      *string `hcl:"interval,optional"`
	CheckInterval *string `hcl:"check_interval,optional"`
	QemuImg       *string `hcl:"qemu_img,optional"`
}

func (c *DoctorConfig) load(fd *fileDoctor, path string) []string {
	if fd == nil {
		return nil
	}
	var errs []string
	if fd.Enabled != nil {
		c.Enabled = *fd.Enabled
	}
	if fd.QemuImg != nil {
		c.QemuImg = *fd.QemuImg
	}
	for _, d := range []struct {
		name string
		v    *string
		dst  *time.Duration
	}{{"doctor.interval", fd.Interval, &c.Interval}, {"doctor.check_interval", fd.CheckInterval, &c.CheckInterval}} {
		if d.v == nil {
			continue
		}
		v, err := policy.ParseDuration(*d.v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s: %v", path, d.name, err))
			continue
		}
		*d.dst = v
	}
	return errs
}

func (c DoctorConfig) validate() []string {
	if !c.Enabled {
		return nil
	}
	var errs []string
	if c.Interval < time.Second {
		errs = append(errs, fmt.Sprintf("doctor.interval %v is too short (at least 1s)", c.Interval))
	}
	if c.CheckInterval < c.Interval {
		errs = append(errs, fmt.Sprintf("doctor.check_interval %v must be at least doctor.interval %v", c.CheckInterval, c.Interval))
	}
	return errs
}
