package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// FlavourEnv chooses the QEMU and libvirt the lab runs: unset or empty is
// the system's (Debian 12: QEMU 7.2, libvirt 9.0); "10" is QEMU 10.0 and
// libvirt 11.3 from bookworm-backports, in the root that
// .ci/flavour-10.sh builds under the lab cache (make lab-flavour-10).
const FlavourEnv = "QTUNE_LAB_FLAVOUR"

// Flavour is the value of QTUNE_LAB_FLAVOUR.
func Flavour() string { return os.Getenv(FlavourEnv) }

// flavourDirs maps each known flavour to its directory under the lab
// cache; the script that builds it writes root/ and bin/ there.
var flavourDirs = map[string]string{"10": "flavour-10"}

// FlavourRoot is the root holding the chosen flavour's QEMU and libvirt,
// "" for the system's. It does not check that the root was built
// (flavourMissing does).
func FlavourRoot() (string, error) {
	f := Flavour()
	if f == "" {
		return "", nil
	}
	sub, ok := flavourDirs[f]
	if !ok {
		return "", fmt.Errorf("%s=%q: unknown lab flavour (known: unset for the system's, 10)", FlavourEnv, f)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, sub, "root"), nil
}

// flavourMissing says why the chosen flavour cannot run, "" when it can
// (or when the system's is chosen).
func flavourMissing() string {
	root, err := FlavourRoot()
	if err != nil {
		return err.Error()
	}
	if root == "" {
		return ""
	}
	for _, p := range []string{
		filepath.Join(root, ".qtune-flavour"),
		filepath.Join(filepath.Dir(root), "bin", "qemu-system-x86_64"),
	} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("lab flavour %s=%s is not built (%v; run make lab-flavour-%s)", FlavourEnv, Flavour(), err, Flavour())
		}
	}
	return ""
}

// The flavour's QEMU tools and virsh are wrappers in the flavour's bin
// directory (see .ci/flavour-10.sh); putting it first on PATH makes every
// test that runs qemu-img, qemu-io, qemu-system-x86_64 or virsh by name,
// and the product code those tests drive, use the flavour without each
// caller knowing of it. libvirtd is not among them: it runs chrooted in
// the root (startHolder).
func init() {
	root, err := FlavourRoot()
	if err != nil || root == "" || flavourMissing() != "" {
		return
	}
	bin := filepath.Join(filepath.Dir(root), "bin")
	path := os.Getenv("PATH")
	if strings.HasPrefix(path, bin+string(os.PathListSeparator)) {
		return
	}
	os.Setenv("PATH", bin+string(os.PathListSeparator)+path)
}

// libvirtdCommand is how a daemon program (libvirtd, virtlogd) is run in
// the lab's namespace: chrooted in the flavour's root, or the system's.
func libvirtdCommand(program string) ([]string, error) {
	root, err := FlavourRoot()
	if err != nil {
		return nil, err
	}
	if root == "" {
		return []string{program}, nil
	}
	return []string{"chroot", root, "/usr/sbin/" + program}, nil
}

// LabVersions are the QEMU and libvirt the lab runs.
type LabVersions struct {
	Flavour string // "" for the system's
	QEMU    string // e.g. "10.0.2"
	Libvirt string // libvirtd's, e.g. "11.3.0"; "" when libvirtd is absent
}

func (v LabVersions) String() string {
	f := v.Flavour
	if f == "" {
		f = "system"
	}
	lv := v.Libvirt
	if lv == "" {
		lv = "none"
	}
	return fmt.Sprintf("lab flavour %s: QEMU %s, libvirt %s", f, v.QEMU, lv)
}

var versionRE = regexp.MustCompile(`\b(\d+\.\d+\.\d+)\b`)

// Versions asks the chosen flavour's qemu-system-x86_64 and libvirtd for
// their versions, so that tests and CI can print what they ran on.
func Versions(ctx context.Context) (LabVersions, error) {
	v := LabVersions{Flavour: Flavour()}
	if why := flavourMissing(); why != "" {
		return v, fmt.Errorf("lab versions: %s", why)
	}
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		return v, fmt.Errorf("qemu-system-x86_64 --version: %w", stderrOf(err))
	}
	m := versionRE.FindString(firstLine(string(out)))
	if m == "" {
		return v, fmt.Errorf("qemu-system-x86_64 --version: no version in %q", firstLine(string(out)))
	}
	v.QEMU = m
	argv, err := libvirtdCommand("libvirtd")
	if err != nil {
		return v, err
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return v, nil
	}
	if v.Flavour == "" {
		if _, err := exec.LookPath("libvirtd"); err != nil {
			return v, nil
		}
	}
	out, err = exec.CommandContext(ctx, argv[0], append(argv[1:], "--version")...).Output()
	if err != nil {
		return v, fmt.Errorf("%s --version: %w", strings.Join(argv, " "), stderrOf(err))
	}
	if m = versionRE.FindString(firstLine(string(out))); m == "" {
		return v, fmt.Errorf("libvirtd --version: no version in %q", firstLine(string(out)))
	}
	v.Libvirt = m
	return v, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// flavourMounts is the shell that makes a flavour's root ready for a
// chrooted libvirtd, in the lab's private mount namespace: the host's
// /dev, /proc and /sys, and the temporary and lab cache directories at
// their own paths (mount points made in the root as needed).
func flavourMounts(root string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	// The root is a mount point of its own: libvirt makes "/" a slave
	// mount before it starts QEMU in a mount namespace, which fails
	// ("Failed disable mount propagation out of the root filesystem")
	// when the chroot's "/" is a mere directory.
	fmt.Fprintf(&b, "mount --bind %q %q\n", root, root)
	seen := map[string]bool{}
	for _, m := range []struct{ how, dir string }{
		{"--rbind", "/dev"}, {"--bind", "/proc"}, {"--rbind", "/sys"},
		{"--rbind", os.TempDir()}, {"--rbind", "/tmp"}, {"--bind", cache},
	} {
		dir := filepath.Clean(m.dir)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		in := filepath.Join(root, dir)
		fmt.Fprintf(&b, "mkdir -p %q\nmount %s %q %q\n", in, m.how, dir, in)
	}
	return b.String(), nil
}
