package fleet

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for what a Config leaves out.
const (
	DefaultLeaseTTL    = 15 * time.Second
	DefaultDialTimeout = 5 * time.Second
	DefaultPrefix      = "/qtune/budgets/"
	// DefaultFloorSpeed is what a copy whose slot is lost slows to: slow
	// enough not to matter to the storage, fast enough to keep the job
	// alive.
	DefaultFloorSpeed = 1 << 20
)

// Config says where etcd is and which budgets this host shares. Every host
// of a fleet should carry the same budget blocks: each host checks the
// limits of its own configuration.
type Config struct {
	Endpoints   []string
	DialTimeout time.Duration // 5 s when zero
	// RequestTimeout bounds every call to etcd (2 s when zero): a job
	// manager calls Acquire once per step and must not hang on it.
	RequestTimeout time.Duration
	CAFile         string
	CertFile       string
	KeyFile        string
	Username       string
	Password       string
	LeaseTTL       time.Duration // 15 s when zero
	FloorSpeed     uint64        // bytes/s for a copy whose slot is lost; 1 MiB/s when zero
	Prefix         string        // key prefix, DefaultPrefix when empty
	Budgets        []Budget
}

// Budget bounds the copies into (or, for a stream, out of) one storage
// backend, whichever hosts they start from.
type Budget struct {
	Name      string
	Dirs      []string // matched by path prefix on clean absolute paths
	MaxCopies int      // copies at once; at least 1
	MaxSpeed  uint64   // summed bytes/s of those copies; 0 = not bounded
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.FloorSpeed == 0 {
		c.FloorSpeed = DefaultFloorSpeed
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("fleet: no etcd endpoints"))
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("fleet: lease TTL %s is under 2s", c.LeaseTTL))
	}
	if c.LeaseTTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("fleet: lease TTL %s is not whole seconds (etcd counts leases in seconds)", c.LeaseTTL))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("fleet: a client certificate needs both cert_file and key_file"))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("fleet: a password without a username"))
	}
	seen := map[string]bool{}
	for _, b := range c.Budgets {
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[b.Name] {
			errs = append(errs, fmt.Errorf("fleet: budget %q defined twice", b.Name))
		}
		seen[b.Name] = true
	}
	return errors.Join(errs...)
}

// Validate reports every problem of b at once.
func (b Budget) Validate() error {
	var errs []error
	switch {
	case b.Name == "":
		errs = append(errs, errors.New("fleet: a budget without a name"))
	case strings.ContainsAny(b.Name, "/ \t\n"):
		errs = append(errs, fmt.Errorf("fleet: budget name %q has a slash or a space", b.Name))
	}
	if b.MaxCopies < 1 {
		errs = append(errs, fmt.Errorf("fleet: budget %q: max_copies %d is under 1", b.Name, b.MaxCopies))
	}
	if len(b.Dirs) == 0 {
		errs = append(errs, fmt.Errorf("fleet: budget %q matches no directory", b.Name))
	}
	for _, d := range b.Dirs {
		if !filepath.IsAbs(d) {
			errs = append(errs, fmt.Errorf("fleet: budget %q: directory %q is not absolute", b.Name, d))
		}
	}
	return errors.Join(errs...)
}

// Match returns the budgets whose directories hold any of dirs (a copy's
// target directory and, for a stream, its source's), each once, in the
// order of the configuration.
func (c Config) Match(dirs ...string) []Budget {
	var out []Budget
	for _, b := range c.Budgets {
		if b.holdsAny(dirs) {
			out = append(out, b)
		}
	}
	return out
}

func (b Budget) holdsAny(dirs []string) bool {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		d = filepath.Clean(d)
		for _, root := range b.Dirs {
			if under(d, filepath.Clean(root)) {
				return true
			}
		}
	}
	return false
}

// under reports whether path is root or inside it: /nfs/a holds /nfs/a/x
// but not /nfs/ab.
func under(path, root string) bool {
	if path == root || root == "/" {
		return true
	}
	return strings.HasPrefix(path, root+"/")
}
