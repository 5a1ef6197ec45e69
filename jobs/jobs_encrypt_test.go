package jobs

import (
	"errors"
	"strings"
	"testing"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/tuning"
)

func TestRefuseClearCopy(t *testing.T) {
	q := policy.Layout{Format: "qcow2"}
	luks := DiskImage{Path: "/d/a.qcow2", Format: "qcow2", Encrypted: true, Encryption: "luks", KeySecret: "sec0"}
	for _, c := range []struct {
		name string
		img  DiskImage
		l    policy.Layout
		want string // "" copies
	}{
		{"plain", DiskImage{Path: "/d/p.qcow2", Format: "qcow2"}, q, ""},
		{"luks with its secret", luks, q, ""},
		{"old aes", DiskImage{Path: "/d/o.qcow2", Format: "qcow2", Encrypted: true, Encryption: "aes"}, q, "old AES"},
		{"raw luks", DiskImage{Path: "/d/r.luks", Format: "luks", Encrypted: true, KeySecret: "s"}, q, "LUKS inside qcow2 only"},
		{"no secret object (QMP)", DiskImage{Path: "/d/l.qcow2", Format: "qcow2", Encrypted: true, Encryption: "luks"}, q, "names no secret object"},
		{"private secret (libvirt)", DiskImage{Path: "/d/l.qcow2", Format: "qcow2", Encrypted: true, Encryption: "luks",
			KeyProblem: "libvirt keeps its secret u1 private"}, q, "private='no'"},
		{"into raw", luks, policy.Layout{Format: "raw"}, "the copy would be raw"},
		{"preallocated", luks, policy.Layout{Format: "qcow2", Preallocation: "metadata"}, "garbage where it never wrote"},
	} {
		err := refuseClearCopy(c.img, c.l)
		var r *tuning.Refusal
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (!errors.As(err, &r) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "in the clear")):
			t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
}
