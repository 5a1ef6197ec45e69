package virt

import (
	"context"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
)

// Secret is what qtune knows of a libvirt secret: its UUID and whether
// libvirt keeps its value from every client (private='yes').
type Secret struct {
	UUID    string
	Private bool
}

// LookupSecret finds the secret a disk's <encryption> names, by UUID or,
// without one, by its volume usage.
func (v *Libvirt) LookupSecret(ctx context.Context, e DiskEncryption) (Secret, error) {
	var out Secret
	what := "secret " + e.SecretUUID
	if e.SecretUUID == "" {
		what = "secret of usage " + e.SecretUsage
	}
	err := v.call(ctx, "look up "+what, func(l *libvirt.Libvirt) error {
		s, err := lookupSecret(l, e)
		if err != nil {
			return err
		}
		doc, err := l.SecretGetXMLDesc(s, 0)
		if err != nil {
			return notFoundAsPlain(err)
		}
		var x struct {
			Private string `xml:"private,attr"`
		}
		if err := xml.Unmarshal([]byte(doc), &x); err != nil {
			return fmt.Errorf("its XML: %w", err)
		}
		out = Secret{UUID: formatUUID(s.UUID), Private: x.Private == "yes"}
		return nil
	})
	return out, err
}

// SecretValue reads a secret's value (virSecretGetValue). libvirt
// refuses it for a private secret.
func (v *Libvirt) SecretValue(ctx context.Context, uuid string) ([]byte, error) {
	var out []byte
	err := v.call(ctx, "read secret "+uuid, func(l *libvirt.Libvirt) error {
		s, err := lookupSecret(l, DiskEncryption{SecretUUID: uuid})
		if err != nil {
			return err
		}
		out, err = l.SecretGetValue(s, 0)
		return notFoundAsPlain(err)
	})
	return out, err
}

func lookupSecret(l *libvirt.Libvirt, e DiskEncryption) (libvirt.Secret, error) {
	if e.SecretUUID == "" {
		s, err := l.SecretLookupByUsage(int32(libvirt.SecretUsageTypeVolume), e.SecretUsage)
		return s, notFoundAsPlain(err)
	}
	u, err := parseUUID(e.SecretUUID)
	if err != nil {
		return libvirt.Secret{}, err
	}
	s, err := l.SecretLookupByUUID(u)
	return s, notFoundAsPlain(err)
}

// notFoundAsPlain keeps a missing secret from reading as a missing
// domain (callError maps libvirt's not-found errors to ErrDomainNotFound,
// which ends a VM's jobs as gone).
func notFoundAsPlain(err error) error {
	if err != nil && libvirt.IsNotFound(err) {
		return fmt.Errorf("%v", err)
	}
	return err
}

// parseUUID reads a UUID in its usual 8-4-4-4-12 form.
func parseUUID(s string) (libvirt.UUID, error) {
	var u libvirt.UUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(u) {
		return u, fmt.Errorf("secret UUID %q is not a UUID", s)
	}
	copy(u[:], b)
	return u, nil
}

func formatUUID(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
