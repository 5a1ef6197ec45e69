package doctor

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// The encryption check: qcow2 images encrypted with LUKS (a cipher QEMU
// reads from the LUKS header inside the image) or with qcow2's old
// built-in AES (crypt_method 1 in the header), against the host CPU's
// AES instructions.

func init() {
	Checks = append(Checks, Check{
		Name:     "encryption",
		Title:    "encrypted image",
		Means:    "The image's guest data is encrypted: LUKS inside qcow2 (format and cipher from the LUKS header), or qcow2's old built-in AES-CBC (crypt_method 1). The host's AES instructions (the aes CPU flag) do LUKS's AES in hardware.",
		Matters:  "Without AES instructions every byte the guest reads or writes costs several times more host CPU. qcow2's old AES encryption has known weaknesses (predictable IVs, no key derivation), and current QEMU refuses to run VMs on it or create new such images. qtune copies (mirror, convert) only LUKS disks whose secret QEMU holds, and keeps the copy encrypted.",
		Fix:      "Keep LUKS on hosts with AES instructions. Re-encrypt an old AES image with LUKS, offline.",
		Severity: "critical for qcow2's old AES; warn for LUKS on a host without the aes flag; info otherwise.",
		Repair:   "qemu-img convert --object secret,id=old,file=OLDKEY --object secret,id=new,file=NEWKEY --image-opts driver=qcow2,encrypt.key-secret=old,file.filename=IMAGE -O qcow2 -o encrypt.format=luks,encrypt.key-secret=new NEW  # WARNING: offline; needs the space of a second copy",
		Image:    encryptionFinding,
	})
}

func encryptionFinding(f ImageFacts) *Finding {
	if !f.Info.Encrypted {
		return nil
	}
	e := f.Info.FormatSpecific.Data.Encrypt
	format := "unknown"
	if e != nil && e.Format != "" {
		format = e.Format
	}
	ev := map[string]string{"format": format}
	if format == "aes" {
		return &Finding{Severity: Critical, Evidence: ev,
			Summary: "encrypted with qcow2's old AES-CBC: weak, and refused by current QEMU for running VMs; re-encrypt it with LUKS"}
	}
	cipher := ""
	if e != nil && e.CipherAlg != "" {
		cipher = e.CipherAlg + "-" + e.CipherMode
		ev["cipher"], ev["ivgen"] = cipher, e.IVGenAlg
	}
	sum := "encrypted with " + format
	if cipher != "" {
		sum += " (" + cipher + ")"
	}
	switch {
	case f.HostAES == nil:
		ev["host_aes"] = "unknown"
		return &Finding{Severity: Info, Evidence: ev, Summary: sum + "; whether the host has AES instructions is unknown"}
	case !*f.HostAES && strings.HasPrefix(cipher, "aes"):
		ev["host_aes"] = "false"
		return &Finding{Severity: Warn, Evidence: ev, Summary: sum + " on a host without AES instructions: every byte costs several times more CPU"}
	}
	ev["host_aes"] = fmt.Sprint(*f.HostAES)
	return &Finding{Severity: Info, Evidence: ev, Summary: sum + "; the host has AES instructions"}
}

// hostAES reads the aes flag of the first CPU in /proc/cpuinfo.
func hostAES() *bool {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		has := false
		for _, fl := range strings.Fields(v) {
			has = has || fl == "aes"
		}
		return &has
	}
	return nil
}
