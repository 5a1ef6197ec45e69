package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/qtune/qtune/fleet"
	"github.com/qtune/qtune/policy"
)

// fileFleet is the fleet block: where etcd is (docs/fleet.md).
//
//	fleet {
//	  endpoints     = ["https://etcd-1:2379"]
//	  lease_ttl     = "15s"
//	  floor_speed   = "1MiB"
//	  ca_file       = "/etc/qtune/etcd-ca.pem"
//	  cert_file     = "/etc/qtune/etcd-client.pem"
//	  key_file      = "/etc/qtune/etcd-client-key.pem"
//	  username      = "qtune"
//	  password_file = "/etc/qtune/etcd-password"
//	}
type fileFleet struct {
	Endpoints      []string  `hcl:"endpoints"`
	DialTimeout    *string   `hcl:"dial_timeout,optional"`
	RequestTimeout *string   `hcl:"request_timeout,optional"`
	LeaseTTL       *string   `hcl:"lease_ttl,optional"`
	FloorSpeed     *string   `hcl:"floor_speed,optional"`
	CAFile         *string   `hcl:"ca_file,optional"`
	CertFile       *string   `hcl:"cert_file,optional"`
	KeyFile        *string   `hcl:"key_file,optional"`
	Username       *string   `hcl:"username,optional"`
	PasswordFile   *string   `hcl:"password_file,optional"`
	Prefix         *string   `hcl:"prefix,optional"`
	Host           *string   `hcl:"host,optional"`
	DefRange       hcl.Range `hcl:",def_range"`
}

// fileBudget is one budget block.
//
//	budget "nfs-a" {
//	  dirs       = ["/srv/nfs-a"]
//	  max_copies = 1
//	  max_speed  = "16MiB"
//	}
type fileBudget struct {
	Name      string    `hcl:"name,label"`
	Dirs      []string  `hcl:"dirs"`
	MaxCopies *int      `hcl:"max_copies,optional"`
	MaxSpeed  *string   `hcl:"max_speed,optional"`
	DefRange  hcl.Range `hcl:",def_range"`
}

func at(r hcl.Range) string { return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column) }

// loadFleet builds the fleet budgets' configuration; every error names
// the block's file:line:col.
func (c *JobsConfig) loadFleet(fc *fileConfig) []string {
	var errs []string
	add := func(r hcl.Range, format string, args ...any) {
		errs = append(errs, at(r)+": "+fmt.Sprintf(format, args...))
	}
	if fc.Fleet == nil {
		for _, b := range fc.Budgets {
			add(b.DefRange, "budget %q needs a fleet block (where etcd is)", b.Name)
		}
		return errs
	}
	ff := fc.Fleet
	cfg := fleet.Config{Endpoints: ff.Endpoints}
	dur := func(name string, dst *time.Duration, v *string) {
		if v == nil {
			return
		}
		d, err := policy.ParseDuration(*v)
		if err != nil {
			add(ff.DefRange, "fleet.%s: %v", name, err)
		}
		*dst = d
	}
	dur("dial_timeout", &cfg.DialTimeout, ff.DialTimeout)
	dur("request_timeout", &cfg.RequestTimeout, ff.RequestTimeout)
	dur("lease_ttl", &cfg.LeaseTTL, ff.LeaseTTL)
	if ff.FloorSpeed != nil {
		n, err := policy.ParseSize(*ff.FloorSpeed)
		if err != nil || n == 0 {
			add(ff.DefRange, "fleet.floor_speed %q: a speed per second above 0 (%v)", *ff.FloorSpeed, err)
		}
		cfg.FloorSpeed = n
	}
	for dst, v := range map[*string]*string{&cfg.CAFile: ff.CAFile, &cfg.CertFile: ff.CertFile, &cfg.KeyFile: ff.KeyFile,
		&cfg.Username: ff.Username, &cfg.Prefix: ff.Prefix} {
		if v != nil {
			*dst = *v
		}
	}
	if ff.PasswordFile != nil {
		b, err := os.ReadFile(*ff.PasswordFile)
		if err != nil {
			add(ff.DefRange, "fleet.password_file: %v", err)
		}
		cfg.Password = strings.TrimSpace(string(b))
	}
	c.FleetHost, _ = os.Hostname()
	if ff.Host != nil && *ff.Host != "" {
		c.FleetHost = *ff.Host
	}
	seen := map[string]bool{}
	for _, fb := range fc.Budgets {
		b := fleet.Budget{Name: fb.Name, Dirs: fb.Dirs}
		if fb.MaxCopies != nil {
			b.MaxCopies = *fb.MaxCopies
		}
		if fb.MaxSpeed != nil {
			n, err := policy.ParseSize(*fb.MaxSpeed)
			if err != nil {
				add(fb.DefRange, "budget %q: max_speed: %v", fb.Name, err)
			}
			b.MaxSpeed = n
		}
		if err := b.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				add(fb.DefRange, "%s", strings.TrimPrefix(line, "fleet: "))
			}
		}
		if seen[fb.Name] {
			add(fb.DefRange, "budget %q is defined twice", fb.Name)
		}
		seen[fb.Name] = true
		cfg.Budgets = append(cfg.Budgets, b)
	}
	// What is left to check is the fleet block's own (budgets done above).
	own := cfg
	own.Budgets = nil
	if err := own.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add(ff.DefRange, "%s", line)
		}
	}
	c.Fleet = &cfg
	return errs
}
