package jobs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/qtune/qtune/virt"
)

type fakeSecrets map[string]virt.Secret // by UUID or usage

func (f fakeSecrets) LookupSecret(_ context.Context, e virt.DiskEncryption) (virt.Secret, error) {
	k := e.SecretUUID
	if k == "" {
		k = e.SecretUsage
	}
	if s, ok := f[k]; ok {
		return s, nil
	}
	return virt.Secret{}, errors.New("no secret " + k)
}

func TestLibvirtKey(t *testing.T) {
	secrets := fakeSecrets{
		"u1":         {UUID: "u1"},
		"/v/a.qcow2": {UUID: "u2"},
		"u3":         {UUID: "u3", Private: true},
	}
	luks := DiskImage{Path: "/v/a.qcow2", Format: "qcow2", Encrypted: true, Encryption: "luks"}
	for _, c := range []struct {
		name         string
		img          DiskImage
		enc          *virt.DiskEncryption
		key, problem string
	}{
		{"by uuid", luks, &virt.DiskEncryption{Format: "luks", SecretUUID: "u1"}, "u1", ""},
		{"by usage", luks, &virt.DiskEncryption{Format: "luks", SecretUsage: "/v/a.qcow2"}, "u2", ""},
		{"private", luks, &virt.DiskEncryption{Format: "luks", SecretUUID: "u3"}, "", "private"},
		{"missing secret", luks, &virt.DiskEncryption{Format: "luks", SecretUUID: "u9"}, "", "cannot be found (no secret u9)"},
		{"no secret named", luks, &virt.DiskEncryption{Format: "luks"}, "", "names no libvirt secret"},
		{"no <encryption>", luks, nil, "", "no <encryption>"},
		{"xml says qcow", luks, &virt.DiskEncryption{Format: "qcow", SecretUUID: "u1"}, "", "not luks"},
		{"plain", DiskImage{Path: "/v/p.qcow2", Format: "qcow2"}, nil, "", ""},
		{"old aes: refused for its format", DiskImage{Path: "/v/o.qcow2", Format: "qcow2", Encrypted: true, Encryption: "aes"},
			&virt.DiskEncryption{Format: "qcow", SecretUUID: "u1"}, "", ""},
	} {
		img := c.img
		libvirtKey(context.Background(), secrets, c.enc, &img)
		if img.KeySecret != c.key || (c.problem == "") != (img.KeyProblem == "") || !strings.Contains(img.KeyProblem, c.problem) {
			t.Errorf("%s: key %q problem %q, want %q %q", c.name, img.KeySecret, img.KeyProblem, c.key, c.problem)
		}
	}
}

// The destination XML libvirt gets reads back, through the same parser
// qtune reads domain XML with, as an encrypted disk on the same secret.
func TestCopyDestXML(t *testing.T) {
	plain := copyDestXML("/fast/a'b.qcow2", "qcow2", "")
	if plain != "<disk type='file'><source file='/fast/a&apos;b.qcow2'/><driver type='qcow2'/></disk>" {
		t.Fatalf("plain: %s", plain)
	}
	enc := copyDestXML("/fast/a.qcow2", "qcow2", "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f")
	disks, err := virt.ParseDomainDisks("<domain><devices>" + strings.Replace(enc, "<disk type='file'>", "<disk type='file'><target dev='vda'/>", 1) + "</devices></domain>")
	if err != nil || len(disks) != 1 {
		t.Fatalf("%s: %+v %v", enc, disks, err)
	}
	d := disks[0]
	if d.Source != "/fast/a.qcow2" || d.Format != "qcow2" || d.Encryption == nil ||
		*d.Encryption != (virt.DiskEncryption{Format: "luks", SecretUUID: "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f"}) {
		t.Fatalf("%s reads back as %+v %+v", enc, d, d.Encryption)
	}
}
