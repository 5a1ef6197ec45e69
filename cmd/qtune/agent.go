package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/agent"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/sdnotify"
)

func init() {
	register(command{name: "agent", summary: "run the tuning agent (the systemd service)", run: runAgent})
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune agent")
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "agent config file (HCL); defaults apply without one")
	libvirtURI := fs.String("libvirt-uri", "", "libvirt URI (default: the local socket)")
	libvirtSocket := fs.String("libvirt-socket", "", "libvirt socket path")
	libvirtPidDir := fs.String("libvirt-pid-dir", "", "where libvirt keeps QEMU pid files")
	qmpDir := fs.String("qmp-dir", "", "watch this directory for plain QEMU VMs' *.sock QMP sockets instead of libvirt")
	policyDir := fs.String("policy", "", "policy directory")
	stateDir := fs.String("state-dir", "", "state directory")
	listen := fs.String("listen", "", "HTTP listen address, or unix:PATH")
	webConfig := fs.String("web-config-file", "", "Prometheus web config file for the listener (TLS, basic auth)")
	interval := fs.Duration("interval", 0, "sampling interval")
	idleInterval := fs.Duration("idle-interval", 0, "sampling interval of quiet VMs (idle_interval; 0 samples every VM every interval)")
	callTimeout := fs.Duration("call-timeout", 0, "deadline of each call to QEMU or libvirt (call_timeout; at most the interval)")
	orphanWarn := fs.Duration("orphan-warn-after", 0, "warn about an owned knob orphaned this long (orphan_warn_after)")
	dryRun := fs.Bool("dry-run", false, "decide and record, never change a VM")
	pprofOn := fs.Bool("pprof", false, "serve Go profiles under /debug/pprof/ (loopback or unix listener only)")
	passthrough := fs.Bool("allow-passthrough", false, "allow QMP through libvirt (taints domains) for cache mode and qcow2 cache")
	logLevel := fs.String("log-level", "", "trace, debug, info, warn, error")
	logFormat := fs.String("log-format", "", "json or text")
	controlSocket := fs.String("control-socket", "", "unix socket for qtune jobs start|cancel (default /run/qtune/control.sock)")
	controlGroup := fs.String("control-group", "", "group allowed on the control socket besides root")
	diskChecks := fs.Bool("disk-checks", true, "run qtune doctor's checks on the disks (doctor { enabled } in the config)")
	dropin := fs.Bool("systemd-dropin", false, "print the systemd drop-in that gives the unit write access to mirror_dirs, and exit")
	var mirrorDirs stringList
	fs.Var(&mirrorDirs, "allow-mirror-dir", "a directory mirrors may write into (repeatable; adds to mirror_dirs)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg := config.Defaults()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	override("libvirt-uri", &cfg.LibvirtURI, *libvirtURI)
	override("libvirt-socket", &cfg.LibvirtSocket, *libvirtSocket)
	override("libvirt-pid-dir", &cfg.LibvirtPidDir, *libvirtPidDir)
	override("qmp-dir", &cfg.QMPDir, *qmpDir)
	override("policy", &cfg.PolicyDir, *policyDir)
	override("state-dir", &cfg.StateDir, *stateDir)
	override("listen", &cfg.Listen, *listen)
	override("web-config-file", &cfg.WebConfigFile, *webConfig)
	override("log-level", &cfg.LogLevel, *logLevel)
	override("log-format", &cfg.LogFormat, *logFormat)
	override("control-socket", &cfg.ControlSocket, *controlSocket)
	override("control-group", &cfg.ControlGroup, *controlGroup)
	cfg.MirrorDirs = append(cfg.MirrorDirs, mirrorDirs...)
	if set["interval"] {
		cfg.Interval = *interval
		if cfg.CallTimeout > cfg.Interval {
			cfg.CallTimeout = cfg.Interval / 2
		}
	}
	if set["call-timeout"] {
		cfg.CallTimeout = *callTimeout
	}
	if set["idle-interval"] {
		cfg.IdleInterval = *idleInterval
	}
	if set["orphan-warn-after"] {
		cfg.OrphanWarnAfter = *orphanWarn
	}
	if set["dry-run"] {
		cfg.DryRun = *dryRun
	}
	if *pprofOn {
		cfg.Pprof = true
	}
	if set["allow-passthrough"] {
		cfg.AllowPassthrough = *passthrough
	}
	if set["disk-checks"] {
		cfg.Doctor.Enabled = *diskChecks
	}
	if set["qmp-dir"] && !set["libvirt-uri"] {
		cfg.LibvirtURI = ""
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *dropin {
		printDropin(stdout, *configPath, cfg.MirrorDirs)
		return exitOK
	}
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name: "qtune", Level: hclog.LevelFromString(cfg.LogLevel), Output: stderr,
		JSONFormat: cfg.LogFormat == "json", TimeFormat: time.RFC3339Nano,
	})
	a := agent.New(cfg, *configPath, log)
	a.SetNotify(func(state string) {
		if _, err := sdnotify.Notify(state); err != nil {
			log.Warn("service manager notification failed", "error", err.Error())
		}
	})
	if err := a.Run(ctx); err != nil {
		log.Error("agent failed", "error", err.Error())
		return exitFailure
	}
	return exitOK
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// printDropin writes a drop-in for qtune.service: the unit's file system
// is read-only but for the state directory, and a mirror must write into
// its target directories.
func printDropin(w io.Writer, configPath string, dirs []string) {
	fmt.Fprintf(w, "# /etc/systemd/system/qtune.service.d/mirror-dirs.conf\n")
	fmt.Fprintf(w, "# Written by `qtune agent --systemd-dropin` from %s: the directories\n", orText(configPath, "the defaults"))
	fmt.Fprintf(w, "# mirrors may write into. A live convert writes beside the image it\n# rewrites: add those image directories here too.\n")
	fmt.Fprintln(w, "[Service]")
	for _, d := range dirs {
		fmt.Fprintf(w, "ReadWritePaths=%s\n", d)
	}
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
