package lab

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// guestModules are the virtio block modules the guest's init loads, in
// order (see internal/loadgen/guestinit).
var guestModules = []string{
	"drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
	"drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci_modern_dev.ko",
	"drivers/virtio/virtio_pci.ko", "drivers/block/virtio_blk.ko",
}

// CacheDir is where downloaded kernels and built initramfs images are kept
// between runs: $QTUNE_LAB_CACHE, else $XDG_CACHE_HOME/qtune-lab, else
// ~/.cache/qtune-lab.
func CacheDir() (string, error) {
	if d := os.Getenv("QTUNE_LAB_CACHE"); d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("lab cache: %w", err)
	}
	d := filepath.Join(base, "qtune-lab")
	return d, os.MkdirAll(d, 0o755)
}

// lockCache serialises work on the cache across processes (go test runs
// packages in parallel).
func lockCache(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Kernel returns the path of Debian's cloud kernel and the directory with
// its virtio modules, downloading the package from Debian's archive with
// apt-get and unpacking it with dpkg -x the first time.
func Kernel(ctx context.Context) (vmlinuz, modDir string, err error) {
	cache, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	unlock, err := lockCache(cache)
	if err != nil {
		return "", "", fmt.Errorf("lock lab cache %s: %w", cache, err)
	}
	defer unlock()
	dir := filepath.Join(cache, "kernel")
	vmlinuz, modDir = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "modules")
	if _, err := os.Stat(filepath.Join(modDir, "virtio_blk.ko")); err == nil {
		return vmlinuz, modDir, nil
	}
	pkg, err := cloudKernelPackage(ctx)
	if err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := runIn(ctx, tmp, "apt-get", "download", pkg); err != nil {
		return "", "", fmt.Errorf("apt-get download %s (run apt-get update first?): %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := runIn(ctx, tmp, "dpkg", "-x", debs[0], root); err != nil {
		return "", "", fmt.Errorf("dpkg -x %s: %w\n%s", debs[0], err, out)
	}
	return vmlinuz, modDir, installKernel(root, dir)
}

// cloudKernelPackage finds the versioned package the metapackage
// linux-image-cloud-amd64 depends on.
func cloudKernelPackage(ctx context.Context) (string, error) {
	out, err := runIn(ctx, "", "apt-cache", "depends", "linux-image-cloud-amd64")
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %w\n%s", err, out)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)`).FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64 names no kernel (run apt-get update?):\n%s", out)
	}
	return m[1], nil
}

func installKernel(root, dir string) error {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*", "kernel"))
	if len(kernels) != 1 || len(mods) != 1 {
		return fmt.Errorf("kernel package: found %d kernels and %d module trees", len(kernels), len(mods))
	}
	stage := dir + ".new"
	os.RemoveAll(stage)
	if err := os.MkdirAll(filepath.Join(stage, "modules"), 0o755); err != nil {
		return err
	}
	if err := copyFile(kernels[0], filepath.Join(stage, "vmlinuz")); err != nil {
		return err
	}
	for _, m := range guestModules {
		if err := copyFile(filepath.Join(mods[0], m), filepath.Join(stage, "modules", filepath.Base(m))); err != nil {
			return fmt.Errorf("kernel package lacks module %s: %w", m, err)
		}
	}
	os.RemoveAll(dir)
	return os.Rename(stage, dir)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sourceRoot is the module root, found from this file's path: the guest's
// init is built from source so that it always matches the tree under test.
func sourceRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("lab: cannot locate the source tree")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("lab: source tree not found at %s: %w", root, err)
	}
	return root, nil
}

var guestOnce struct {
	sync.Mutex
	kernel, initrd string
}

// Guest returns a kernel and an initramfs whose /init is qtune's load
// generator. The initramfs is rebuilt when the generator's binary changes.
func Guest(ctx context.Context) (kernel, initrd string, err error) {
	guestOnce.Lock()
	defer guestOnce.Unlock()
	if guestOnce.initrd != "" {
		return guestOnce.kernel, guestOnce.initrd, nil
	}
	kernel, modDir, err := Kernel(ctx)
	if err != nil {
		return "", "", err
	}
	root, err := sourceRoot()
	if err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp("", "qtune-guestinit-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./internal/loadgen/guestinit")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build guest init: %w\n%s", err, out)
	}
	initrd, err = buildInitramfs(bin, modDir)
	if err != nil {
		return "", "", err
	}
	guestOnce.kernel, guestOnce.initrd = kernel, initrd
	return kernel, initrd, nil
}

// GuestT is Guest for tests.
func GuestT(t testing.TB) (kernel, initrd string) {
	t.Helper()
	k, i, err := Guest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return k, i
}

func buildInitramfs(initBin, modDir string) (string, error) {
	var raw bytes.Buffer
	zw := gzip.NewWriter(&raw)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"dev", "proc", "sys", "lib", "lib/modules"} {
		c.Dir(d)
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs exists.
	c.CharDev("dev/console", 5, 1)
	b, err := os.ReadFile(initBin)
	if err != nil {
		return "", err
	}
	c.File("init", b, 0o755)
	for _, m := range guestModules {
		mb, err := os.ReadFile(filepath.Join(modDir, filepath.Base(m)))
		if err != nil {
			return "", err
		}
		c.File("lib/modules/"+filepath.Base(m), mb, 0o644)
	}
	if err := c.Close(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw.Bytes())
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, "initrd-"+hex.EncodeToString(sum[:8])+".cpio.gz")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := path + "." + strings.ReplaceAll(filepath.Base(os.Args[0]), "/", "_") + fmt.Sprint(os.Getpid())
	if err := os.WriteFile(tmp, raw.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
