package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// The cost of encryption and compression, measured in the host's block
// layer with qemu-io (no guest: what QEMU's own I/O path costs, the
// figure the guest's I/O adds to). "Random" 4 KiB I/O is a stride of
// 1 MiB + 4 KiB, which defeats read-ahead and cluster locality and is
// the same sequence in every run. Images are opened with cache=none
// (O_DIRECT) so the host page cache does not answer for the image.

const benchKey = "qtune-bench-key"

// benchImageSize is the virtual size of the benchmark's images (256M).
const benchImageSize = 256 << 20

type ioCase struct {
	name  string
	write bool
	buf   string // -s
	step  string // -S, "" sequential
	count int
}

// cryptCompress is the "crypt-compress" benchmark.
func cryptCompress(ctx context.Context, o options) (string, error) {
	dir, err := os.MkdirTemp(o.resultsDir, ".bench-crypt-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	size, n4k, nseq := "256M", 4000, 200
	if o.full {
		n4k, nseq = 20000, 800
	}
	secret := "secret,id=sec0,data=" + benchKey
	plain, luks := filepath.Join(dir, "plain.qcow2"), filepath.Join(dir, "luks.qcow2")
	if err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", plain, size); err != nil {
		return "", err
	}
	if _, err := lab.QemuImg(ctx, "create", "-q", "-f", "qcow2", "--object", secret,
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,preallocation=metadata", luks, size); err != nil {
		return "", err
	}
	opts := map[string][]string{
		"plain": {"--image-opts", "driver=qcow2,file.filename=" + plain + ",cache.direct=on"},
		"luks":  {"--object", secret, "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename=" + luks + ",cache.direct=on"},
	}
	cases := []ioCase{
		{"sequential write, 1 MiB", true, "1M", "", nseq},
		{"sequential read, 1 MiB", false, "1M", "", nseq},
		{"random write, 4 KiB", true, "4k", "1052672", n4k},
		{"random read, 4 KiB", false, "4k", "1052672", n4k},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Encryption and compression\n\nqemu-io on the host (no guest), one request at a time, %s qcow2 images with preallocated metadata, cache=none. \"Random\" 4 KiB I/O is a stride of 1 MiB + 4 KiB (the same sequence every run). CPU is qemu-io's user+system time per GiB moved, including its start; the LUKS key slot is made with a 10 ms iteration time so that unlocking it does not count.\n\n", size)
	b.WriteString("| I/O | plain qcow2 | LUKS qcow2 (aes-256-xts) | LUKS ÷ plain (time) | CPU s/GiB plain | CPU s/GiB LUKS |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, c := range cases {
		p, err := qemuBench(ctx, opts["plain"], c)
		if err != nil {
			return "", err
		}
		l, err := qemuBench(ctx, opts["luks"], c)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.2f | %.2f |\n", c.name, p.rate(c), l.rate(c), l.wall.Seconds()/p.wall.Seconds(), p.cpuPerGiB(), l.cpuPerGiB())
	}
	// Compressed images: the plain image (now written) rewritten with
	// qemu-img convert -c, read back.
	b.WriteString("\nCompressed images: the plain image above (its written data: the benchmark's fill pattern) copied with `qemu-img convert -c`, then read.\n\n")
	b.WriteString("| I/O | uncompressed | zlib | zstd |\n| --- | --- | --- | --- |\n")
	imgs := []string{plain}
	for _, ct := range []string{"zlib", "zstd"} {
		p := filepath.Join(dir, ct+".qcow2")
		if err := run(ctx, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type="+ct, plain, p); err != nil {
			return "", err
		}
		imgs = append(imgs, p)
	}
	for _, c := range []ioCase{cases[1], cases[3]} {
		row := "| " + c.name
		for _, p := range imgs {
			r, err := qemuBench(ctx, []string{"--image-opts", "driver=qcow2,file.filename=" + p + ",cache.direct=on"}, c)
			if err != nil {
				return "", err
			}
			row += fmt.Sprintf(" | %s, %.2f CPU s/GiB", r.rate(c), r.cpuPerGiB())
		}
		b.WriteString(row + " |\n")
	}
	b.WriteString("\nsizes on disk:")
	for _, p := range imgs {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, " %s %.1f MiB;", filepath.Base(p), float64(st.Size())/(1<<20))
		}
	}
	b.WriteString("\n")
	return b.String(), nil
}

type benchRun struct {
	wall  time.Duration
	cpu   time.Duration
	bytes float64
	count int
}

func (r benchRun) rate(c ioCase) string {
	if c.step == "" {
		return fmt.Sprintf("%.0f MB/s", r.bytes/r.wall.Seconds()/1e6)
	}
	return fmt.Sprintf("%.0f IOPS", float64(r.count)/r.wall.Seconds())
}

func (r benchRun) cpuPerGiB() float64 { return r.cpu.Seconds() / (r.bytes / (1 << 30)) }

// qemuBench runs one pass of I/O with qemu-io (qemu-img bench takes no
// --object, so cannot open a LUKS image): one command per request, and
// reads its time and CPU.
func qemuBench(ctx context.Context, img []string, c ioCase) (benchRun, error) {
	bs := int64(4096)
	if c.buf == "1M" {
		bs = 1 << 20
	}
	step := bs
	if c.step != "" {
		fmt.Sscan(c.step, &step)
	}
	op := "read"
	if c.write {
		op = "write -P 0x5a"
	}
	args := []string{"-t", "none"}
	args = append(args, img...)
	var off int64
	for i := 0; i < c.count; i++ {
		args = append(args, "-c", fmt.Sprintf("%s -q %d %d", op, off, bs))
		off = (off + step) % benchImageSize
		if off+bs > benchImageSize {
			off = 0
		}
	}
	cmd := exec.CommandContext(ctx, "qemu-io", args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil || len(out) > 0 {
		return benchRun{}, fmt.Errorf("qemu-io %s ...: %v\n%s", strings.Join(args[:min(len(args), 8)], " "), err, out)
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var cpu time.Duration
	if ru != nil {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return benchRun{wall: wall, cpu: cpu, bytes: float64(bs) * float64(c.count), count: c.count}, nil
}

func run(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
