package doctor

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsIocFiemap is FS_IOC_FIEMAP (_IOWR('f', 11, struct fiemap)); x/sys
// does not name it.
const (
	fsIocFiemap    = 0xC020660B
	fiemapFlagSync = 0x1
)

// fiemapHeader is struct fiemap without its extent array: asked with
// fm_extent_count = 0 the kernel only counts the extents.
type fiemapHeader struct {
	Start, Length                         uint64
	Flags, MappedExtents, ExtentCount, _r uint32
}

// Extents counts the extents of a file on its host filesystem (FIEMAP,
// after a sync so delayed allocations are placed). Filesystems without
// FIEMAP (tmpfs) return an error.
func Extents(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := fiemapHeader{Length: ^uint64(0), Flags: fiemapFlagSync}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&h)))
	if errno != 0 {
		return 0, fmt.Errorf("fiemap %s: %w", path, errno)
	}
	return uint64(h.MappedExtents), nil
}

// FileSystem is what the space and host checks read about the
// filesystem under an image.
type FileSystem struct {
	Mount   string
	Type    string
	Options string
	Size    uint64 // bytes
	Free    uint64 // bytes available to unprivileged writers
}

// StatFS reads the filesystem under path: sizes from statfs, type and
// options from the mount table (the longest mount point that holds it).
func StatFS(path string) (FileSystem, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FileSystem{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	fs := FileSystem{Size: st.Blocks * uint64(st.Bsize), Free: st.Bavail * uint64(st.Bsize)}
	mf, err := os.Open("/proc/self/mounts")
	if err != nil {
		return fs, nil
	}
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		mnt := strings.ReplaceAll(f[1], `\040`, " ")
		if within(path, mnt) && len(mnt) >= len(fs.Mount) {
			fs.Mount, fs.Type, fs.Options = mnt, f[2], f[3]
		}
	}
	return fs, nil
}

func within(path, mnt string) bool {
	return mnt == "/" || path == mnt || strings.HasPrefix(path, mnt+"/")
}
