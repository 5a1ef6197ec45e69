package qmp

import (
	"context"
	"reflect"

	"github.com/digitalocean/go-libvirt"
)

// RunState is query-status's reply: Status is QEMU's RunState
// ("running", "paused", "io-error", ...).
type RunState struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus reads the VM's run state.
func (b *Block) QueryStatus(ctx context.Context) (RunState, error) {
	var s RunState
	return s, b.call(ctx, "query-status", nil, &s)
}

// DomainState reads a domain's state the way QEMU's query-status names
// it: "running", "paused", "io-error" (paused because a disk failed),
// "shutoff", ... It uses libvirt's own API, so it taints nothing.
func (v *Libvirt) DomainState(ctx context.Context, domain string) (RunState, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return RunState{}, err
	}
	var state, reason int32
	err = v.call(ctx, "get state of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		state, reason, err = l.DomainGetState(d, 0)
		return err
	})
	if err != nil {
		return RunState{}, err
	}
	return domainRunState(libvirt.DomainState(state), reason), nil
}

func domainRunState(state libvirt.DomainState, reason int32) RunState {
	switch state {
	case libvirt.DomainRunning:
		return RunState{Running: true, Status: "running"}
	case libvirt.DomainPaused:
		if libvirt.DomainPausedReason(reason) == libvirt.DomainPausedIoerror {
			return RunState{Status: "io-error"}
		}
		return RunState{Status: "paused"}
	case libvirt.DomainShutoff:
		return RunState{Status: "shutoff"}
	case libvirt.DomainCrashed:
		return RunState{Status: "crashed"}
	case libvirt.DomainPmsuspended:
		return RunState{Status: "suspended"}
	}
	return RunState{Status: "other"}
}

// DiskErrors reads the I/O error each disk of a domain has hit, as
// query-block's io-status names it ("nospace", "failed"), keyed by disk
// target. Disks without an error are not listed.
func (v *Libvirt) DiskErrors(ctx context.Context, domain string) (map[string]string, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	var errs []libvirt.DomainDiskError
	err = v.call(ctx, "get disk errors of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		errs, _, err = l.DomainGetDiskErrors(d, 64, 0)
		return err
	})
	out := map[string]string{}
	for _, e := range errs {
		if s := diskErrorName(e); s != "" {
			out[e.Disk] = s
		}
	}
	return out, err
}

// diskErrorName decodes a disk error's code. go-libvirt generates the
// field unexported (remote_error), so it is read through reflect.
func diskErrorName(e libvirt.DomainDiskError) string {
	f := reflect.ValueOf(e).FieldByName("remote_error")
	if !f.IsValid() {
		return "failed"
	}
	switch libvirt.DomainDiskErrorCode(f.Int()) {
	case libvirt.DomainDiskErrorNone:
		return ""
	case libvirt.DomainDiskErrorNoSpace:
		return "nospace"
	}
	return "failed"
}
