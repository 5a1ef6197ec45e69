package virt

import (
	"context"
	"encoding/json"

	"github.com/digitalocean/go-libvirt"
)

// BlockJobErrors follows one domain's QEMU events for the reason its
// block jobs fail, which libvirt 9.0 keeps to itself: its block-job event
// says only "failed", GetBlockJobInfo finds nothing once libvirt has
// dismissed the job, the disk's I/O status stays "ok" (a copy's target
// error is reported to the job, not to the guest's disk), and neither the
// domain log nor GetJobStats carry it. QEMU's BLOCK_JOB_COMPLETED event
// does ("No space left on device"), and libvirt forwards every QEMU event
// to a monitor-event subscriber without tainting the domain (only a
// monitor command taints). f gets each failed job's QEMU id and error.
// The subscription is in place when BlockJobErrors returns; done is
// closed when ctx ends or the connection drops (a reconnect does not
// renew it).
func (v *Libvirt) BlockJobErrors(ctx context.Context, domain string, f func(job, msg string)) (done <-chan struct{}, err error) {
	var evs <-chan libvirt.DomainEvent
	err = v.call(ctx, "subscribe to QEMU events of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		evs, err = l.SubscribeQEMUEvents(ctx, domain)
		return err
	})
	if err != nil {
		return nil, err
	}
	d := make(chan struct{})
	go func() {
		defer close(d)
		for ev := range evs { // drained to the end: go-libvirt blocks on an unread event
			if job, msg, ok := BlockJobError(ev.Event, ev.Details); ok {
				f(job, msg)
			}
		}
	}()
	return d, nil
}

// BlockJobError reads a failed job's id and QEMU's error from a
// BLOCK_JOB_COMPLETED event (its data, or the whole event as libvirt
// passes it on); ok is false for any other event or a job that ended
// without error.
func BlockJobError(name string, details []byte) (job, msg string, ok bool) {
	if name != "BLOCK_JOB_COMPLETED" {
		return "", "", false
	}
	var body struct {
		Device string          `json:"device"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if json.Unmarshal(details, &body) != nil {
		return "", "", false
	}
	if body.Data != nil {
		return BlockJobError(name, body.Data)
	}
	if body.Device == "" || body.Error == "" {
		return "", "", false
	}
	return body.Device, body.Error, true
}
