package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// Under libvirt an encrypted disk's key is a libvirt secret its
// <encryption> names. libvirt opens a copy's target encrypted when the
// destination XML carries the same <encryption>, but with
// VIR_DOMAIN_BLOCK_COPY_REUSE_EXT (qtune makes the target, with the
// layout asked for, which libvirt's own creation does not take) the
// target must already be a LUKS image under that key. qtune makes it
// with qemu-img, the key read from libvirt (virSecretGetValue) and handed
// to qemu-img through a pipe: it is in qtune's memory for the seconds
// the image takes to make, and never on a command line or on disk. A
// secret libvirt keeps private cannot be read, and such a copy is
// refused before anything is written.

// secretLookup finds the libvirt secret a disk's <encryption> names.
type secretLookup interface {
	LookupSecret(ctx context.Context, e virt.DiskEncryption) (virt.Secret, error)
}

// libvirtKey sets the libvirt secret a copy of an encrypted disk is
// made with (KeySecret, its UUID), or why there is none (KeyProblem).
func libvirtKey(ctx context.Context, s secretLookup, e *virt.DiskEncryption, img *DiskImage) {
	switch {
	case !img.Encrypted || img.Encryption != "luks":
		return // not encrypted, or the old AES: refused for that
	case e == nil:
		img.KeyProblem = "the domain XML gives it no <encryption> naming its libvirt secret"
		return
	case e.Format != "luks":
		img.KeyProblem = "its <encryption> is format '" + e.Format + "', not luks"
		return
	case e.SecretUUID == "" && e.SecretUsage == "":
		img.KeyProblem = "its <encryption> names no libvirt secret"
		return
	}
	sec, err := s.LookupSecret(ctx, *e)
	switch {
	case err != nil:
		img.KeyProblem = "its libvirt secret cannot be found (" + err.Error() + ")"
	case sec.Private:
		img.KeyProblem = "libvirt keeps its secret " + sec.UUID + " private, so qtune cannot read the key to make the copy's LUKS key slot"
	default:
		img.KeySecret = sec.UUID
	}
}

// copyDestXML is a copy's destination <disk> for virDomainBlockCopy;
// with secret (a libvirt secret's UUID) it carries the <encryption>
// that makes libvirt open the target through the same key.
func copyDestXML(dest, format, secret string) string {
	src := fmt.Sprintf("<source file='%s'/>", tuning.XMLEscape(dest))
	if secret != "" {
		src = fmt.Sprintf("<source file='%s'><encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption></source>",
			tuning.XMLEscape(dest), tuning.XMLEscape(secret))
	}
	return fmt.Sprintf("<disk type='file'>%s<driver type='%s'/></disk>", src, tuning.XMLEscape(format))
}

// formatEncryptedLibvirt makes the copy's target (the empty file qtune
// claimed) a LUKS qcow2 under the disk's own key, with the layout asked
// for, and proves its header says so before libvirt copies into it.
func (b *LibvirtDriver) formatEncryptedLibvirt(ctx context.Context, j *state.Job, img DiskImage) error {
	if img.KeySecret == "" {
		return errors.New("no libvirt secret to encrypt the copy with; nothing copied")
	}
	key, err := b.v.SecretValue(ctx, img.KeySecret)
	if err != nil {
		return fmt.Errorf("key of %s: %w", img.Path, err)
	}
	err = b.qemuImg.CreateLUKS(ctx, j.Dest, layoutOpts(j.Layout), img.VirtualSize, key)
	clear(key)
	if err != nil {
		return fmt.Errorf("format %s encrypted: %w", j.Dest, err)
	}
	chain, err := b.qemuImg.Info(ctx, j.Dest)
	if err != nil {
		return err
	}
	top := chain[0]
	if !top.Encrypted || top.FormatSpecific == nil || top.FormatSpecific.Data.Encrypt == nil || top.FormatSpecific.Data.Encrypt.Format != "luks" {
		return errors.New("the copy's target " + j.Dest + " is not LUKS-encrypted; nothing copied")
	}
	return nil
}
