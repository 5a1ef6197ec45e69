// Package buildinfo says which build of qtune is running: the version,
// commit and build date the release build stamps in with
//
//	go build -ldflags "-X github.com/qtune/qtune/internal/buildinfo.version=1.2.3 ..."
//
// and, for a plain `go build` or `go install`, what the Go toolchain
// recorded in the binary (module version, VCS revision and time). The
// same string appears in `qtune version`, `qtune status` and the
// qtune_build_info metric, so an SRE can match one to the other.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Set at link time by the Makefile (-X); empty in a plain go build.
var (
	version string
	commit  string
	date    string
)

// Info is one build's identity.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
}

// String is the one-line form: qtune VERSION (commit C, built D, GO).
func (i Info) String() string {
	return fmt.Sprintf("qtune %s (commit %s, built %s, %s)", i.Version, i.Commit, i.Date, i.GoVersion)
}

var (
	once sync.Once
	info Info
)

// Get returns the running binary's build identity. A field neither the
// linker nor the toolchain filled is "unknown", never empty, so that a
// metric label or a status line always says something.
func Get() Info {
	once.Do(func() { info = resolve(version, commit, date, readBuildInfo()) })
	return info
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// resolve prefers what the linker stamped in, then the toolchain's record.
func resolve(v, c, d string, bi *debug.BuildInfo) Info {
	i := Info{Version: v, Commit: c, Date: d, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.time":
				if i.Date == "" {
					i.Date = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && c == "" && i.Commit != "" {
			i.Commit += "-dirty"
		}
	}
	for _, f := range []*string{&i.Version, &i.Commit, &i.Date} {
		if *f == "" {
			*f = "unknown"
		}
	}
	if i.Version == "unknown" {
		i.Version = "devel"
	}
	return i
}
