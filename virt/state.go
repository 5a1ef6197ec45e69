package virt

import "github.com/digitalocean/go-libvirt"

// stateNames are libvirt's domain states as virsh prints them.
var stateNames = map[libvirt.DomainState]string{
	libvirt.DomainNostate:     "nostate",
	libvirt.DomainRunning:     "running",
	libvirt.DomainBlocked:     "blocked",
	libvirt.DomainPaused:      "paused",
	libvirt.DomainShutdown:    "shutdown",
	libvirt.DomainShutoff:     "shutoff",
	libvirt.DomainCrashed:     "crashed",
	libvirt.DomainPmsuspended: "pmsuspended",
}

// pausedReasons say why a domain is paused; ioerror is the one that
// means a guest waits on storage.
var pausedReasons = map[libvirt.DomainPausedReason]string{
	libvirt.DomainPausedUnknown:        "unknown",
	libvirt.DomainPausedUser:           "user",
	libvirt.DomainPausedMigration:      "migration",
	libvirt.DomainPausedSave:           "save",
	libvirt.DomainPausedDump:           "dump",
	libvirt.DomainPausedIoerror:        "ioerror",
	libvirt.DomainPausedWatchdog:       "watchdog",
	libvirt.DomainPausedFromSnapshot:   "from_snapshot",
	libvirt.DomainPausedShuttingDown:   "shutting_down",
	libvirt.DomainPausedSnapshot:       "snapshot",
	libvirt.DomainPausedCrashed:        "crashed",
	libvirt.DomainPausedStartingUp:     "starting_up",
	libvirt.DomainPausedPostcopy:       "postcopy",
	libvirt.DomainPausedPostcopyFailed: "postcopy_failed",
	libvirt.DomainPausedAPIError:       "api_error",
}

var runningReasons = map[libvirt.DomainRunningReason]string{
	libvirt.DomainRunningUnknown:           "unknown",
	libvirt.DomainRunningBooted:            "booted",
	libvirt.DomainRunningMigrated:          "migrated",
	libvirt.DomainRunningRestored:          "restored",
	libvirt.DomainRunningFromSnapshot:      "from_snapshot",
	libvirt.DomainRunningUnpaused:          "unpaused",
	libvirt.DomainRunningMigrationCanceled: "migration_canceled",
	libvirt.DomainRunningSaveCanceled:      "save_canceled",
	libvirt.DomainRunningWakeup:            "wakeup",
	libvirt.DomainRunningCrashed:           "crashed",
	libvirt.DomainRunningPostcopy:          "postcopy",
}

// StateName is libvirt's name of a domain state.
func StateName(s libvirt.DomainState) string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return "unknown"
}

// StateReason names the reason code of a running or paused domain; ""
// for other states or a code this qtune does not know.
func StateReason(s libvirt.DomainState, reason int32) string {
	switch s {
	case libvirt.DomainPaused:
		return pausedReasons[libvirt.DomainPausedReason(reason)]
	case libvirt.DomainRunning:
		return runningReasons[libvirt.DomainRunningReason(reason)]
	}
	return ""
}
