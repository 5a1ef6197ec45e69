package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/qtune/qtune/internal/loadgen"
)

// ImageOpts are qemu-img create options.
type ImageOpts struct {
	ClusterSize   uint64
	Backing       string // backing file (its format is read with qemu-img info)
	BackingFormat string // default qcow2
	ExtendedL2    bool
	Preallocation string
}

// CreateImage makes an image with qemu-img.
func CreateImage(ctx context.Context, path, format string, size uint64, o ImageOpts) error {
	args := []string{"create", "-q", "-f", format}
	var opts []string
	if o.ClusterSize != 0 {
		opts = append(opts, "cluster_size="+strconv.FormatUint(o.ClusterSize, 10))
	}
	if o.ExtendedL2 {
		opts = append(opts, "extended_l2=on")
	}
	if o.Preallocation != "" {
		opts = append(opts, "preallocation="+o.Preallocation)
	}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	if o.Backing != "" {
		bf := o.BackingFormat
		if bf == "" {
			bf = "qcow2"
		}
		args = append(args, "-b", o.Backing, "-F", bf)
	}
	args = append(args, path)
	if size > 0 {
		args = append(args, strconv.FormatUint(size, 10))
	}
	return qemuImg(ctx, args...)
}

// Chain makes a backing chain of depth overlays over a base in dir and
// returns the images top first: chain[0] is the active layer,
// chain[depth] the base.
func Chain(ctx context.Context, dir string, depth int, size uint64) ([]string, error) {
	base := filepath.Join(dir, "base.qcow2")
	if err := CreateImage(ctx, base, "qcow2", size, ImageOpts{}); err != nil {
		return nil, err
	}
	chain := []string{base}
	for i := 1; i <= depth; i++ {
		top := filepath.Join(dir, fmt.Sprintf("overlay%d.qcow2", i))
		if err := CreateImage(ctx, top, "qcow2", 0, ImageOpts{Backing: chain[0]}); err != nil {
			return nil, err
		}
		chain = append([]string{top}, chain...)
	}
	return chain, nil
}

// ImageInfo is qemu-img info's view of one layer.
type ImageInfo struct {
	Filename            string `json:"filename"`
	Format              string `json:"format"`
	VirtualSize         uint64 `json:"virtual-size"`
	ActualSize          uint64 `json:"actual-size"`
	ClusterSize         uint64 `json:"cluster-size"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	FormatSpecific      struct {
		Data struct {
			ExtendedL2 bool `json:"extended-l2"`
		} `json:"data"`
	} `json:"format-specific"`
}

// Info describes the image at path and its backing chain, top first.
// -U reads images a running VM holds locked.
func Info(ctx context.Context, path string) ([]ImageInfo, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", "--backing-chain", path).Output()
	if err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w", path, stderrOf(err))
	}
	var chain []ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return chain, nil
}

// Compare reports whether two images have the same guest-visible content.
func Compare(ctx context.Context, a, b string) (bool, error) {
	err := exec.CommandContext(ctx, "qemu-img", "compare", "-U", a, b).Run()
	if err == nil {
		return true, nil
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, fmt.Errorf("qemu-img compare %s %s: %w", a, b, stderrOf(err))
}

// WritePattern writes length bytes of pattern at offset into the image
// (not its backing files) with qemu-io, so tests can tell layers apart.
func WritePattern(ctx context.Context, path, format string, pattern byte, offset, length uint64) error {
	cmd := fmt.Sprintf("write -P 0x%02x %d %d", pattern, offset, length)
	out, err := exec.CommandContext(ctx, "qemu-io", "-f", format, "-c", cmd, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-io %s %q: %w\n%s", path, cmd, err, out)
	}
	return nil
}

func qemuImg(ctx context.Context, args ...string) error {
	_, err := QemuImg(ctx, args...)
	return err
}

// pbkdfGlitch is what qemu-img says when its LUKS key-derivation
// benchmark read no CPU time for its first round (thread CPU time is
// coarse; a busy host hits it now and then). Nothing is created then, so
// the command is simply run again.
const pbkdfGlitch = "Unable to get accurate CPU usage"

// QemuImg runs qemu-img with args and returns its combined output. It
// retries, a few times, a LUKS image creation that failed only on
// pbkdfGlitch.
func QemuImg(ctx context.Context, args ...string) ([]byte, error) {
	for try := 1; ; try++ {
		out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput()
		if err == nil {
			return out, nil
		}
		if !strings.Contains(string(out), pbkdfGlitch) || try == 5 || ctx.Err() != nil {
			return out, fmt.Errorf("qemu-img %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func stderrOf(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// CheckStamps checks the guest's stamped blocks in the first span bytes
// of an image (see loadgen.CheckStamps) and returns how many there are.
func CheckStamps(ctx context.Context, path string, span int64) (int, error) {
	return CheckStampsOf(ctx, span, path)
}

// CheckStampsOf is CheckStamps of the image qemu-img convert's source
// arguments name: a path, or --object secret,... --image-opts driver=...
// for an encrypted image read through its key.
func CheckStampsOf(ctx context.Context, span int64, src ...string) (int, error) {
	dir, err := os.MkdirTemp("", "qtune-stamps-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	raw := filepath.Join(dir, "image.raw")
	args := append(append([]string{"convert", "-U", "-O", "raw"}, src...), raw)
	if err := qemuImg(ctx, args...); err != nil {
		return 0, err
	}
	f, err := os.Open(raw)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return loadgen.CheckStamps(f, span, 4096)
}
