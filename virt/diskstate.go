package virt

import (
	"context"
	"reflect"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/qmp"
)

// DomainState reads a domain's state the way QEMU's query-status names
// it: "running", "paused", "io-error" (paused because a disk failed),
// "shutoff", ... It uses libvirt's own API, so it taints nothing.
func (v *Libvirt) DomainState(ctx context.Context, domain string) (qmp.RunState, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return qmp.RunState{}, err
	}
	var state, reason int32
	err = v.call(ctx, "get state of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		state, reason, err = l.DomainGetState(d, 0)
		return err
	})
	if err != nil {
		return qmp.RunState{}, err
	}
	return domainRunState(libvirt.DomainState(state), reason), nil
}

func domainRunState(state libvirt.DomainState, reason int32) qmp.RunState {
	switch state {
	case libvirt.DomainRunning:
		return qmp.RunState{Running: true, Status: "running"}
	case libvirt.DomainPaused:
		if libvirt.DomainPausedReason(reason) == libvirt.DomainPausedIoerror {
			return qmp.RunState{Status: "io-error"}
		}
		return qmp.RunState{Status: "paused"}
	case libvirt.DomainShutoff:
		return qmp.RunState{Status: "shutoff"}
	case libvirt.DomainCrashed:
		return qmp.RunState{Status: "crashed"}
	case libvirt.DomainPmsuspended:
		return qmp.RunState{Status: "suspended"}
	}
	return qmp.RunState{Status: "other"}
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
