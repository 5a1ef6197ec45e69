package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// A copy never writes a guest's data in the clear: the target of a
// mirror or convert of an encrypted disk is encrypted too, with the same
// key, or the job does not start. Under plain QEMU qtune never holds the
// key: QEMU makes the target (blockdev-create) and opens it through the
// secret object the disk's own node names, so the passphrase stays where
// the operator put it. Under libvirt the target is made with the key of
// the libvirt secret the disk's <encryption> names, and the copy's
// destination carries that <encryption> (jobs_encrypt_libvirt.go). A
// stream writes into the disk's own image and keeps it as it is.

// encryptedStartTimeout bounds the start of an encrypted copy: making
// and opening its LUKS key slot takes seconds of QEMU's time.
const encryptedStartTimeout = 2 * time.Minute

// refuseClearCopy refuses, before anything is written, a copy of an
// encrypted disk whose target qtune cannot make encrypted with the same
// key.
func refuseClearCopy(img DiskImage, l policy.Layout) error {
	if !img.Encrypted {
		return nil
	}
	refuse := func(why, todo string) error {
		return &tuning.Refusal{Code: tuning.RefuseUnsupported,
			Reason: fmt.Sprintf("%s is encrypted%s: %s, and a copy never writes the guest's data in the clear; %s", img.Path, encryptionOf(img), why, todo)}
	}
	switch {
	case img.Encryption == "aes":
		return refuse("qcow2's old AES encryption is broken and current QEMU creates no such image",
			"re-encrypt it with LUKS offline (qemu-img convert --object secret,id=s,file=KEY --image-opts ... -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s)")
	case img.Format != "qcow2" || img.Encryption != "luks":
		return refuse("qtune copies LUKS inside qcow2 only, not a "+img.Format+" disk",
			"copy it by hand, or move it into a LUKS qcow2 image")
	case l.Format != "qcow2":
		return refuse("the copy would be "+l.Format+", which holds no LUKS key slots here", "keep the copy's format qcow2")
	case l.Preallocation == "metadata" || l.Preallocation == "falloc":
		// Clusters allocated but never written hold no ciphertext: read
		// through the key they are garbage, not the zeros the guest had.
		return refuse("a LUKS copy preallocated with "+l.Preallocation+" would show the guest garbage where it never wrote",
			"leave preallocation out (or use full) for an encrypted disk")
	case img.KeySecret == "" && img.KeyProblem != "": // libvirt
		return refuse(img.KeyProblem,
			"give the disk an <encryption format='luks'> whose <secret type='passphrase'> names a libvirt secret defined with private='no', or copy it by hand (virsh blockcopy --reuse-external into a LUKS image made with the key, its destination XML carrying the disk's <encryption>)")
	case img.KeySecret == "":
		return refuse("its node names no secret object qtune could give the copy",
			"open the disk with -blockdev ...,encrypt.key-secret=ID and a secret object")
	}
	return nil
}

func encryptionOf(img DiskImage) string {
	if img.Encryption == "" {
		return ""
	}
	return " (" + img.Encryption + ")"
}

// createEmpty claims an encrypted copy's target: an empty file the
// driver formats with the disk's key once the job starts (QEMU through
// the secret object it holds; under libvirt qemu-img, given the libvirt
// secret's key).
func createEmpty(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// qmpFormatEncrypted formats the copy's target file node as a LUKS qcow2
// with the layout asked for, through the disk's own secret object, and
// returns the format node's options that open it with the same key.
func qmpFormatEncrypted(ctx context.Context, vm *tuning.VMHandle, j *state.Job, img DiskImage, fileNode string) (map[string]any, error) {
	l := j.Layout
	enc := map[string]any{"format": "luks", "key-secret": img.KeySecret}
	opts := map[string]any{"driver": "qcow2", "file": fileNode, "size": img.VirtualSize, "encrypt": enc}
	if l.ClusterSize != 0 {
		opts["cluster-size"] = l.ClusterSize
	}
	if l.ExtendedL2 != nil {
		opts["extended-l2"] = *l.ExtendedL2
	}
	if l.CompressionType != "" {
		opts["compression-type"] = l.CompressionType
	}
	if l.Preallocation != "" {
		opts["preallocation"] = l.Preallocation
	}
	h := sha256.Sum256([]byte(j.ID))
	id := "qtmk-" + hex.EncodeToString(h[:6]) // not a qtune block job id: nothing else waits on it
	b := vm.Block()
	if err := b.Call(ctx, "blockdev-create", map[string]any{"job-id": id, "options": opts}, nil); err != nil {
		return nil, fmt.Errorf("format %s encrypted: %w", j.Dest, err)
	}
	defer b.JobDismiss(context.WithoutCancel(ctx), id)
	for {
		jobs, err := b.QueryJobs(ctx)
		if err != nil {
			return nil, fmt.Errorf("format %s encrypted: %w", j.Dest, err)
		}
		done, failed := false, ""
		for _, x := range jobs {
			if x.ID == id && x.Status == qmp.JobConcluded {
				done, failed = true, x.Error
			}
		}
		if failed != "" {
			return nil, fmt.Errorf("format %s encrypted: %s", j.Dest, failed)
		}
		if done {
			return map[string]any{"encrypt": map[string]any{"format": "luks", "key-secret": img.KeySecret}}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("format %s encrypted: %w", j.Dest, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkEncryptedNode proves the target node QEMU opened is LUKS before a
// byte of the guest's is copied into it.
func checkEncryptedNode(ctx context.Context, vm *tuning.VMHandle, node string) error {
	nodes, err := vm.Block().QueryNamedBlockNodes(ctx, true)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.NodeName != node {
			continue
		}
		if n.Encrypted && n.Image != nil && n.Image.FormatSpecific != nil &&
			n.Image.FormatSpecific.Data.Encrypt != nil && n.Image.FormatSpecific.Data.Encrypt.Format == "luks" {
			return nil
		}
		return errors.New("the copy's node " + node + " is not LUKS-encrypted; nothing copied")
	}
	return errors.New("the copy's node " + node + " is gone")
}
