// Package qemuimg runs the qemu-img binary: one place that knows its
// name (configurable: the agent's qemu_img), its arguments for what qtune
// asks of it, and how its failures read.
package qemuimg

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/qtune/qtune/qmp"
)

// DefaultPath is the binary looked up in PATH when none is configured.
const DefaultPath = "qemu-img"

// Runner runs one qemu-img binary. The zero Runner runs DefaultPath.
type Runner struct {
	Path string
}

func (r Runner) path() string {
	if r.Path == "" {
		return DefaultPath
	}
	return r.Path
}

// Run runs qemu-img with args and returns its standard output; a
// failure carries what it wrote to standard error.
func (r Runner) Run(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, nil, args...)
}

// run is Run with files given to qemu-img from fd 3 on.
func (r Runner) run(ctx context.Context, extra []*os.File, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.path(), args...)
	cmd.ExtraFiles = extra
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		what := "qemu-img"
		if len(args) > 0 {
			what += " " + args[0]
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("%s: %w: %s", what, err, msg)
		}
		return out, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// Info reads an image and its backing chain, top first. It reads with
// -U (force share): a running VM holds the image open.
func (r Runner) Info(ctx context.Context, path string) ([]qmp.ImageInfo, error) {
	out, err := r.Run(ctx, "info", "-U", "--backing-chain", "--output=json", path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	var chain []qmp.ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("qemu-img info %s: no image in its answer", path)
	}
	return chain, nil
}

// Create makes a new image of size bytes in format, with the creation
// options opts ("cluster_size=65536", ...).
func (r Runner) Create(ctx context.Context, path, format string, opts []string, size uint64) error {
	args := []string{"create", "-q", "-f", format}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	args = append(args, path, strconv.FormatUint(size, 10))
	if _, err := r.Run(ctx, args...); err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	return nil
}

// CreateLUKS makes a new qcow2 image of size bytes whose data is
// encrypted with LUKS under key, with the creation options opts. The
// key reaches qemu-img through a pipe its secret object reads
// (file=/dev/fd/3): never on its command line, which any user of the
// host can read in /proc, and never in a file.
func (r Runner) CreateLUKS(ctx context.Context, path string, opts []string, size uint64, key []byte) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("image %s: key pipe: %w", path, err)
	}
	defer pr.Close()
	// A passphrase fits in the pipe's buffer many times over: written
	// and closed before qemu-img starts, it reads it to the end at once.
	_, err = pw.Write(key)
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image %s: key pipe: %w", path, err)
	}
	o := append([]string{"encrypt.format=luks", "encrypt.key-secret=qtkey"}, opts...)
	args := []string{"create", "-q", "--object", "secret,id=qtkey,file=/dev/fd/3", "-f", "qcow2",
		"-o", strings.Join(o, ","), path, strconv.FormatUint(size, 10)}
	if _, err := r.run(ctx, []*os.File{pr}, args...); err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	return nil
}
