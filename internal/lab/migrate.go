package lab

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// MigrateOptions shape a lab migration.
type MigrateOptions struct {
	// BandwidthMiB caps the copy of the guest's RAM in MiB/s (0: no
	// cap), to keep a migration running long enough to watch or abort.
	BandwidthMiB int
}

// Migrate live-migrates a persistent domain from src to dst over
// loopback and returns how long it took. Both daemons open the same disk
// images (shared storage), and the domain ends up defined on dst only.
func Migrate(ctx context.Context, src, dst *Libvirtd, domain string) (time.Duration, error) {
	return MigrateWith(ctx, src, dst, domain, MigrateOptions{})
}

// MigrateWith is Migrate with options.
//
// virsh drives it (not peer-to-peer: virsh talks to both daemons); the
// migration traffic stays on 127.0.0.1 through --migrateuri and
// --listen-address, since qemu.conf's migration_address rejects a
// loopback address. --unsafe because libvirt 9.0 calls any disk on a
// local filesystem non-shared storage even with cache='none'; here both
// sides open the same file, which is safe.
func MigrateWith(ctx context.Context, src, dst *Libvirtd, domain string, o MigrateOptions) (time.Duration, error) {
	args := []string{"migrate", "--live", "--unsafe", "--persistent", "--undefinesource",
		domain, dst.URI(), "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"}
	if o.BandwidthMiB > 0 {
		args = append(args, "--bandwidth", strconv.Itoa(o.BandwidthMiB))
	}
	start := time.Now()
	if _, err := src.Virsh(ctx, args...); err != nil {
		return time.Since(start), fmt.Errorf("migrate %s from %s to %s: %w", domain, src.Dir, dst.Dir, err)
	}
	return time.Since(start), nil
}

// MigrateTo live-migrates the domain to dst (see Migrate); from then on
// the domain's methods act on dst.
func (dom *Domain) MigrateTo(ctx context.Context, dst *Libvirtd) (time.Duration, error) {
	took, err := Migrate(ctx, dom.d, dst, dom.Name)
	if err == nil {
		dom.d = dst
	}
	return took, err
}

// Daemon is the libvirtd the domain runs on now.
func (dom *Domain) Daemon() *Libvirtd { return dom.d }
