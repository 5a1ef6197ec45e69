package virt

import (
	"reflect"
	"testing"

	"github.com/digitalocean/go-libvirt"
)

// go-libvirt generates the disk error's code as an unexported field that
// its decoder skips (DiskErrors reads the code where it lands); if that
// changes, this test says so.
func TestDiskErrorCodeField(t *testing.T) {
	f, ok := reflect.TypeOf(libvirt.DomainDiskError{}).FieldByName("remote_error")
	if !ok || f.Type.Kind() != reflect.Int32 {
		t.Fatalf("libvirt.DomainDiskError has no int32 remote_error field: %+v", f)
	}
}

func TestDomainRunState(t *testing.T) {
	for _, c := range []struct {
		state  libvirt.DomainState
		reason int32
		want   string
	}{
		{libvirt.DomainRunning, 1, "running"},
		{libvirt.DomainPaused, int32(libvirt.DomainPausedIoerror), "io-error"},
		{libvirt.DomainPaused, int32(libvirt.DomainPausedUser), "paused"},
		{libvirt.DomainShutoff, 0, "shutoff"},
	} {
		if got := domainRunState(c.state, c.reason); got.Status != c.want || got.Running != (c.want == "running") {
			t.Errorf("%v/%d: %+v, want %s", c.state, c.reason, got, c.want)
		}
	}
}
