package virt

import (
	"context"
	"errors"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// MigrationPhase is what a lifecycle event says about a live migration.
//
// On the source a migration shows as (suspended-migrated, for the
// switch-over) then migrated-out; on the destination as migrating-in
// (QEMU started, paused, receiving) then resumed-migrated. A migration
// that fails before the switch-over sends nothing on the source; one that
// fails after it sends resumed-migrated on the source, where the domain
// runs again: the same code as the destination's arrival, so the side
// that sees it tells which (a domain that did not arrive by migrating-in
// is back home).
type MigrationPhase string

const (
	// MigrationNone: the event is not about a migration.
	MigrationNone MigrationPhase = ""
	// MigrationSuspended: stopped/paused for the switch-over.
	MigrationSuspended MigrationPhase = "suspended-migrated"
	// MigrationOut: the domain left this host; it runs elsewhere now.
	MigrationOut MigrationPhase = "migrated-out"
	// MigrationIn: an incoming domain's QEMU started here, paused.
	MigrationIn MigrationPhase = "migrating-in"
	// MigrationResumed: the domain runs here after a migration (arrived,
	// or back on the source after a failed switch-over).
	MigrationResumed MigrationPhase = "resumed-migrated"
)

// Migration says what a lifecycle event means for a migration.
func (e DomainEvent) Migration() MigrationPhase {
	if e.Kind != "lifecycle" {
		return MigrationNone
	}
	switch libvirt.DomainEventType(e.Event) {
	case libvirt.DomainEventStopped:
		if e.Detail == int32(libvirt.DomainEventStoppedMigrated) {
			return MigrationOut
		}
	case libvirt.DomainEventStarted:
		if e.Detail == int32(libvirt.DomainEventStartedMigrated) {
			return MigrationIn
		}
	case libvirt.DomainEventSuspended:
		if e.Detail == int32(libvirt.DomainEventSuspendedMigrated) {
			return MigrationSuspended
		}
	case libvirt.DomainEventResumed:
		if e.Detail == int32(libvirt.DomainEventResumedMigrated) {
			return MigrationResumed
		}
	}
	return MigrationNone
}

// DomainJob is the job a domain runs as libvirt reports it.
type DomainJob struct {
	// Type is libvirt's job type: none, bounded, unbounded (running),
	// completed, failed, cancelled.
	Type string
	// Operation is what the job does: migration-out, migration-in,
	// save, dump, snapshot, backup, ...; "" when libvirt does not say.
	Operation string
	Elapsed   time.Duration
	// Data: bytes to transfer, transferred and left (RAM and disks).
	DataTotal, DataProcessed, DataRemaining uint64
}

// Active reports whether the job is running now.
func (j DomainJob) Active() bool { return j.Type == "bounded" || j.Type == "unbounded" }

// Migrating reports whether the domain is in the middle of a migration,
// in or out: qtune must not change it then.
func (j DomainJob) Migrating() bool {
	return j.Active() && (j.Operation == "migration-out" || j.Operation == "migration-in")
}

var jobTypes = map[libvirt.DomainJobType]string{
	libvirt.DomainJobNone: "none", libvirt.DomainJobBounded: "bounded", libvirt.DomainJobUnbounded: "unbounded",
	libvirt.DomainJobCompleted: "completed", libvirt.DomainJobFailed: "failed", libvirt.DomainJobCancelled: "cancelled",
}

var jobOperations = map[libvirt.DomainJobOperation]string{
	libvirt.DomainJobOperationStrStart: "start", libvirt.DomainJobOperationStrSave: "save",
	libvirt.DomainJobOperationStrRestore: "restore", libvirt.DomainJobOperationStrMigrationIn: "migration-in",
	libvirt.DomainJobOperationStrMigrationOut: "migration-out", libvirt.DomainJobOperationStrSnapshot: "snapshot",
	libvirt.DomainJobOperationStrSnapshotRevert: "snapshot-revert", libvirt.DomainJobOperationStrDump: "dump",
	libvirt.DomainJobOperationStrBackup: "backup", libvirt.DomainJobOperationStrSnapshotDelete: "snapshot-delete",
}

// Job reads the domain's current job (DomainGetJobStats). On the
// destination of a migration libvirt has no statistics: the job is then
// reported as a running migration-in with no figures.
func (v *Libvirt) Job(ctx context.Context, domain string) (DomainJob, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return DomainJob{}, err
	}
	var typ int32
	var params []libvirt.TypedParam
	incoming := false
	err = v.call(ctx, "get job of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		typ, params, err = l.DomainGetJobStats(d, 0)
		// libvirt (9.0's qemuDomainGetJobStats) answers "migration
		// statistics are available only on the source host" with this
		// code while the domain's job is an incoming migration, and
		// for nothing else.
		if libvirtCode(err) == libvirt.ErrOperationUnsupported {
			incoming, err = true, nil
		}
		return err
	})
	if incoming {
		return DomainJob{Type: "unbounded", Operation: "migration-in"}, nil
	}
	return DecodeJobStats(typ, params), err
}

// libvirtCode is the error code of a libvirt error, ErrOk for none.
func libvirtCode(err error) libvirt.ErrorNumber {
	var e libvirt.Error
	if errors.As(err, &e) {
		return libvirt.ErrorNumber(e.Code)
	}
	return libvirt.ErrOk
}

// DecodeJobStats turns DomainGetJobStats' answer into a DomainJob.
func DecodeJobStats(typ int32, params []libvirt.TypedParam) DomainJob {
	j := DomainJob{Type: jobTypes[libvirt.DomainJobType(typ)]}
	for _, p := range params {
		switch p.Field {
		case libvirt.DomainJobOperationStr:
			if n, ok := p.Value.I.(int32); ok {
				j.Operation = jobOperations[libvirt.DomainJobOperation(n)]
			}
		case libvirt.DomainJobTimeElapsed:
			j.Elapsed = time.Duration(asUint(p.Value.I)) * time.Millisecond
		case libvirt.DomainJobDataTotal:
			j.DataTotal = asUint(p.Value.I)
		case libvirt.DomainJobDataProcessed:
			j.DataProcessed = asUint(p.Value.I)
		case libvirt.DomainJobDataRemaining:
			j.DataRemaining = asUint(p.Value.I)
		}
	}
	return j
}
