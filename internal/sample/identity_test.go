package sample

import (
	"testing"
	"time"
)

func qemuID(pid int, ticks uint64) VMIdentity {
	return VMIdentity{Socket: "/run/qtune/a.sock", PID: pid, Boot: "b1", StartTicks: ticks,
		Started: time.Date(2026, 1, 1, 12, 0, 0, int(ticks), time.UTC)}
}

func TestIdentityDiffers(t *testing.T) {
	for _, c := range []struct {
		name     string
		was, now VMIdentity
		want     bool
	}{
		{"same domain", VMIdentity{UUID: "u1"}, VMIdentity{UUID: "u1"}, false},
		{"domain redefined", VMIdentity{UUID: "u1"}, VMIdentity{UUID: "u2"}, true},
		{"same process", qemuID(10, 500), qemuID(10, 500), false},
		{"process restarted", qemuID(10, 500), qemuID(11, 900), true},
		{"pid reused", qemuID(10, 500), qemuID(10, 900), true},
		{"host rebooted", qemuID(10, 500), func() VMIdentity { id := qemuID(10, 500); id.Boot = "b2"; return id }(), true},
		{"record without identity", VMIdentity{}, qemuID(10, 500), false},
		{"start unreadable now", qemuID(10, 500), VMIdentity{Socket: "/run/qtune/a.sock"}, false},
		{"kinds differ", VMIdentity{UUID: "u1"}, qemuID(10, 500), false},
	} {
		if got := c.was.Differs(c.now); got != c.want {
			t.Errorf("%s: Differs = %v, want %v", c.name, got, c.want)
		}
	}
}
