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

// DiskErrors reads the I/O error a domain's disk has hit, as query-block's
// io-status names it ("nospace", "failed"), keyed by disk target; an empty
// map when no disk has one. Only the first disk with an error is known:
// go-libvirt generates the error code as an unexported field its decoder
// skips without reading, so the reply's bytes shift by one field. Asked
// for one error, the code then lands in the count that follows it.
func (v *Libvirt) DiskErrors(ctx context.Context, domain string) (map[string]string, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	var errs []libvirt.DomainDiskError
	var n int32
	err = v.call(ctx, "get disk errors of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		errs, n, err = l.DomainGetDiskErrors(d, 1, 0)
		return err
	})
	out := map[string]string{}
	if err != nil || len(errs) == 0 {
		return out, err
	}
	code := diskErrorCode(errs[0])
	if code == 0 {
		code = n // the shifted decode: see above
	}
	out[errs[0].Disk] = diskErrorName(libvirt.DomainDiskErrorCode(code))
	return out, nil
}

// diskErrorCode reads the code field, 0 when the decoder left it unset.
func diskErrorCode(e libvirt.DomainDiskError) int32 {
	f := reflect.ValueOf(e).FieldByName("remote_error")
	if !f.IsValid() {
		return 0
	}
	return int32(f.Int())
}

// diskErrorName names a code; libvirt lists only disks with an error, so
// anything but nospace is a failure.
func diskErrorName(c libvirt.DomainDiskErrorCode) string {
	if c == libvirt.DomainDiskErrorNoSpace {
		return "nospace"
	}
	return "failed"
}
