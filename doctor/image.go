package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/qtune/qtune/internal/hoststat"
)

// maxChain bounds the walk down a backing chain (a loop of backing files
// must not hang the doctor).
const maxChain = 64

// ImageInfo is the part of `qemu-img info --output=json` the checks read.
type ImageInfo struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize uint64 `json:"virtual-size"`
	ActualSize  uint64 `json:"actual-size"`
	ClusterSize uint64 `json:"cluster-size"`
	DirtyFlag   bool   `json:"dirty-flag"`
	BackingFile string `json:"backing-filename"`
	FullBacking string `json:"full-backing-filename"`
	Snapshots   []struct {
		Name        string `json:"name"`
		VMStateSize uint64 `json:"vm-state-size"`
	} `json:"snapshots"`
	FormatSpecific struct {
		Data struct {
			Compat          string `json:"compat"`
			LazyRefcounts   bool   `json:"lazy-refcounts"`
			Corrupt         bool   `json:"corrupt"`
			ExtendedL2      bool   `json:"extended-l2"`
			CompressionType string `json:"compression-type"`
			// Encrypt is the header's encryption: format luks (with its
			// cipher) or aes, qcow2's old built-in one.
			Encrypt *struct {
				Format     string `json:"format"`
				CipherAlg  string `json:"cipher-alg"`
				CipherMode string `json:"cipher-mode"`
				IVGenAlg   string `json:"ivgen-alg"`
			} `json:"encrypt"`
		} `json:"data"`
	} `json:"format-specific"`
	Encrypted bool `json:"encrypted"`
}

// CheckResult is `qemu-img check --output=json`.
type CheckResult struct {
	Corruptions        int    `json:"corruptions"`
	Leaks              int    `json:"leaks"`
	CheckErrors        int    `json:"check-errors"`
	CorruptionsFixed   int    `json:"corruptions-fixed"`
	AllocatedClusters  uint64 `json:"allocated-clusters"`
	TotalClusters      uint64 `json:"total-clusters"`
	FragmentedClusters uint64 `json:"fragmented-clusters"`
	CompressedClusters uint64 `json:"compressed-clusters"`
	ImageEndOffset     uint64 `json:"image-end-offset"`
	LeaksFixed         int    `json:"leaks-fixed"`
	Filename           string `json:"filename"`
}

// ChainLink is one image of a backing chain, top first.
type ChainLink struct {
	Path string
	Info *ImageInfo
	Err  error // unreadable or missing
}

// ImageFacts is everything the offline checks look at.
type ImageFacts struct {
	Path string
	// Shared is set when the image is open by a running VM and was read
	// with force-share: its figures may be stale.
	Shared bool
	Info   ImageInfo
	Chain  []ChainLink // below the top image
	Check  *CheckResult
	// CheckErr is why qemu-img check could not run.
	CheckErr error
	// L2Cache is the metadata cache the image gets (bytes).
	L2Cache uint64
	// Extents of the image file on the host (FIEMAP); ExtentsErr when
	// the filesystem cannot say.
	Extents    uint64
	ExtentsErr error
	// FS is the filesystem under the image; FSErr when statfs failed.
	FS    FileSystem
	FSErr error
	// FSImages and FSGrowth are how many of the images checked together
	// sit on the same filesystem and how much they may all still grow
	// (ShareFilesystems); zero when this image was checked alone.
	FSImages int
	FSGrowth uint64
	// Queue is the block-layer queue of the device under the image;
	// QueueErr when there is none (tmpfs, overlay, NFS).
	Queue    hoststat.Queue
	QueueErr error
	// FileSize is the image file's length.
	FileSize uint64
	// HostAES: the host CPU has AES instructions (the aes flag of
	// /proc/cpuinfo); nil when that could not be read.
	HostAES *bool
	// OpenErr is why qemu-img could not open an image the doctor could
	// read: the image is damaged, not unreadable.
	OpenErr error
	// Header is the doctor's own reading of a qcow2 image: when qemu-img
	// cannot open it, and beside every qemu-img check of an image not in
	// use.
	Header *Qcow2Diag
	// CheckUnsupported is set when qemu-img has no check for the format.
	CheckUnsupported bool
	// LiveWriteIOPS is the guest's write rate to the image over the
	// doctor's interval when the image is a running VM's disk; nil
	// offline or with one sample only.
	LiveWriteIOPS *float64
}

// QemuImg runs qemu-img; Path empty means "qemu-img" from PATH.
type QemuImg struct{ Path string }

func (q QemuImg) bin() string {
	if q.Path == "" {
		return "qemu-img"
	}
	return q.Path
}

var errLocked = errors.New("image is locked by another process")

func (q QemuImg) run(ctx context.Context, share bool, args ...string) ([]byte, int, error) {
	if share {
		args = append([]string{args[0], "-U"}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, q.bin(), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	msg := strings.TrimSpace(errb.String())
	// QEMU's lock errors: `Failed to get "write" lock` and `Failed to get
	// shared "write" lock`; a bare "lock" would match check's reports
	// about refcount blocks.
	if strings.Contains(msg, "Failed to get shared") || strings.Contains(msg, `" lock`) {
		return nil, code, fmt.Errorf("%s: %w", msg, errLocked)
	}
	if err != nil && out.Len() == 0 {
		if msg == "" {
			msg = err.Error()
		}
		return nil, code, errors.New(msg)
	}
	return out.Bytes(), code, nil
}

// Info reads one image's header (not its chain).
func (q QemuImg) Info(ctx context.Context, path string, share bool) (ImageInfo, error) {
	out, _, err := q.run(ctx, share, "info", "--output=json", path)
	if err != nil {
		return ImageInfo{}, err
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info, nil
}

// Check runs qemu-img check read-only (never -r).
func (q QemuImg) Check(ctx context.Context, path string, share bool) (*CheckResult, error) {
	out, code, err := q.run(ctx, share, "check", "--output=json", path)
	if err != nil {
		return nil, err
	}
	var c CheckResult
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("qemu-img check %s (exit %d): %w", path, code, err)
	}
	return &c, nil
}

// Gather reads an image's facts: info (with force-share only when the
// image is locked by a running VM), the backing chain link by link (so
// a missing link is named, not just an error), and unless skipCheck a
// qemu-img check.
func (q QemuImg) Gather(ctx context.Context, path string, l2Cache uint64, skipCheck bool) (ImageFacts, error) {
	f := ImageFacts{Path: path, L2Cache: l2Cache}
	info, err := q.Info(ctx, path, false)
	if errors.Is(err, errLocked) {
		f.Shared = true
		info, err = q.Info(ctx, path, true)
	}
	if err != nil {
		if err := q.damaged(ctx, &f, err); err != nil {
			return f, fmt.Errorf("image %s: %w", path, err)
		}
		f.hostFacts()
		return f, nil
	}
	f.Info = info
	f.hostFacts()
	f.Chain = q.chain(ctx, path, info, f.Shared)
	// qemu-img check opens the whole chain: with a link missing it can
	// only fail, and backing_missing already says why.
	// qemu-img check of an encrypted image needs its key, which the
	// doctor never has: the checks that read check's result are not run.
	if !skipCheck && info.Format != "raw" && !info.Encrypted && !chainBroken(f.Chain) {
		f.Check, f.CheckErr = q.Check(ctx, path, f.Shared)
		if f.CheckErr != nil && strings.Contains(f.CheckErr.Error(), "does not support checks") {
			f.Check, f.CheckErr, f.CheckUnsupported = nil, nil, true
		}
	}
	if info.Format == "raw" {
		f.CheckUnsupported = true
		if rawLooksQcow2(path) {
			if d, err := diagnoseFile(path, true); err == nil && qcow2WithoutMagic(d) {
				f.Header = d
			}
		}
	}
	if info.Format == "qcow2" && !f.Shared && !skipCheck {
		// With qemu-img check, the doctor's own walk: it names where
		// check only counts, and sees what check does not (an image cut
		// inside its L2 tables reads as zeros to QEMU). Not on an image
		// in use, whose metadata moves under the reader.
		if d, err := diagnoseFile(path, false); err == nil {
			f.Header = d
		}
	}
	return f, nil
}

// rawLooksQcow2 is the cheap first look (24 bytes) before a raw image
// is read as a qcow2 whose magic is gone.
func rawLooksQcow2(path string) bool {
	file, err := os.Open(path)
	if err != nil {
		return false
	}
	defer file.Close()
	var b [24]byte
	if _, err := file.ReadAt(b[:], 0); err != nil {
		return false
	}
	h := parseQcow2Header(b[:])
	return h.Magic != qcow2Magic && (h.Version == 2 || h.Version == 3) && h.clusterOK()
}

// qcow2WithoutMagic says whether a file that probes as raw has the rest
// of a qcow2 header: version, cluster size, and L1 and refcount tables
// that fit the file. Random or guest data passes all of it by chance
// about never; a qcow2 whose first four bytes were overwritten does.
func qcow2WithoutMagic(d *Qcow2Diag) bool {
	h := d.Header
	if d.AssumedVersion != 0 || !h.clusterOK() || h.L1Size == 0 || h.RefTableClusters == 0 {
		return false
	}
	for _, c := range []string{"qcow2_l1_table", "qcow2_refcount_table", "qcow2_size"} {
		if len(d.Problems[c]) > 0 {
			return false
		}
	}
	return true
}

// hostFacts reads what the file and filesystem under the image say.
func (f *ImageFacts) hostFacts() {
	path := f.Path
	if st, err := os.Stat(path); err == nil {
		f.FileSize = uint64(st.Size())
	}
	if abs, err := filepath.Abs(path); err == nil {
		f.FS, f.FSErr = StatFS(abs)
		f.Queue, f.QueueErr = hoststat.NewReader().QueueFor(abs)
	}
	f.Extents, f.ExtentsErr = Extents(path)
	if f.Info.Encrypted {
		f.HostAES = hostAES()
	}
}

// damaged decides what a failed qemu-img info means. A file that cannot
// be opened, or a qemu-img that cannot run, leaves the image unread (the
// error is returned); a file that reads but that qemu-img cannot open is
// damaged: the doctor reads a qcow2 header itself and reports it.
func (q QemuImg) damaged(ctx context.Context, f *ImageFacts, infoErr error) error {
	if errors.Is(infoErr, errLocked) || ctx.Err() != nil {
		return infoErr
	}
	if _, err := exec.LookPath(q.bin()); err != nil {
		return infoErr
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	st, err := file.Stat()
	file.Close()
	switch {
	case err != nil:
		return err
	case st.IsDir():
		return errors.New("a directory, not an image")
	}
	f.OpenErr = infoErr
	d, err := diagnoseFile(f.Path, true)
	if err != nil {
		return err
	}
	if d != nil && d.Header.Magic == qcow2Magic {
		f.Header = d
	}
	return nil
}

// diagnoseFile reads a qcow2 image's header and tables read-only.
func diagnoseFile(path string, salvage bool) (*Qcow2Diag, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	return DiagnoseQcow2(io.NewSectionReader(file, 0, st.Size()), uint64(st.Size()), salvage)
}

func (q QemuImg) chain(ctx context.Context, top string, info ImageInfo, share bool) []ChainLink {
	var links []ChainLink
	dir := filepath.Dir(top)
	cur := info
	for i := 0; i < maxChain && cur.BackingFile != ""; i++ {
		p := cur.FullBacking
		if p == "" {
			p = cur.BackingFile
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		link := ChainLink{Path: p}
		if _, err := os.Stat(p); err != nil {
			link.Err = err
			return append(links, link)
		}
		next, err := q.Info(ctx, p, share)
		if errors.Is(err, errLocked) {
			next, err = q.Info(ctx, p, true)
		}
		if err != nil {
			link.Err = err
			return append(links, link)
		}
		link.Info = &next
		links = append(links, link)
		cur, dir = next, filepath.Dir(p)
	}
	return links
}

func chainBroken(links []ChainLink) bool {
	for _, l := range links {
		if l.Err != nil {
			return true
		}
	}
	return false
}

// Growth is how much more host space the image may take: its virtual
// size less what it has allocated (0 for a preallocated image).
func (f ImageFacts) Growth() uint64 {
	if f.Info.VirtualSize > f.Info.ActualSize {
		return f.Info.VirtualSize - f.Info.ActualSize
	}
	return 0
}

// ShareFilesystems tells every image how many of the images checked
// together share its filesystem and how much they may grow in all: thin
// images overcommit a filesystem together, not one by one.
func ShareFilesystems(facts []ImageFacts) {
	type sum struct {
		n      int
		growth uint64
	}
	by := map[string]*sum{}
	for _, f := range facts {
		if f.FSErr != nil || f.FS.Mount == "" {
			continue
		}
		s := by[f.FS.Mount]
		if s == nil {
			s = &sum{}
			by[f.FS.Mount] = s
		}
		s.n++
		s.growth += f.Growth()
	}
	for i := range facts {
		if s := by[facts[i].FS.Mount]; s != nil && facts[i].FSErr == nil {
			facts[i].FSImages, facts[i].FSGrowth = s.n, s.growth
		}
	}
}
