package jobs

import (
	"github.com/qtune/qtune/tuning"
)

// A copy never writes a guest's data in the clear: the target of a
// mirror or convert of an encrypted disk must be encrypted too, or the
// job does not start. A stream writes into the disk's own image and
// keeps it as it is.

// refuseClearCopy refuses a copy of an encrypted disk that qtune cannot
// make encrypted, before anything is written.
func refuseClearCopy(img DiskImage) error {
	if !img.Encrypted {
		return nil
	}
	return &tuning.Refusal{Code: tuning.RefuseUnsupported, Reason: img.Path + " is encrypted" + encryptionOf(img) +
		": qtune does not copy encrypted disks (the copy would hold the guest's data in the clear); move it by hand with qemu-img convert --object secret,... -o encrypt.format=luks"}
}

func encryptionOf(img DiskImage) string {
	if img.Encryption == "" {
		return ""
	}
	return " (" + img.Encryption + ")"
}
