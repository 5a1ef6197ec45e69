package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsTheDefaults(t *testing.T) {
	cfg, err := Load("../examples/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	def := Defaults()
	if cfg.Interval != def.Interval || cfg.CallTimeout != def.CallTimeout || cfg.PolicyDir != def.PolicyDir ||
		cfg.StateDir != def.StateDir || cfg.Listen != def.Listen || cfg.Limits != def.Limits || cfg.LibvirtSocket != def.LibvirtSocket ||
		cfg.AllowPassthrough || cfg.DryRun || cfg.HistogramsEnabled != nil || !slices.Equal(cfg.Histograms, def.Histograms) || cfg.JobsConfig.AllowWriteBlocking != def.JobsConfig.AllowWriteBlocking {
		t.Errorf("examples/agent.hcl drifted from Defaults():\n%+v\n%+v", cfg, def)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.hcl")
	os.WriteFile(path, []byte("interval = \"5s\"\nintervall = \"5s\"\nlimits {\n  per_vm_per_hour = \"many\"\n}\n"), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{path + ":2:1", "intervall", path + ":4:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	os.WriteFile(path, []byte("interval = \"soon\"\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("bad duration: %v", err)
	}
	os.WriteFile(path, []byte("qmp_dir = \"/run/q\"\ninterval = \"2s\"\nhistograms {\n  enabled = true\n}\n"), 0o644)
	cfg, err := Load(path)
	if err != nil || cfg.QMPDir != "/run/q" || cfg.Interval != 2*time.Second || len(cfg.Histograms) != 6 || cfg.Histograms[0] != 1e6 ||
		cfg.HistogramsEnabled == nil || !*cfg.HistogramsEnabled {
		t.Errorf("%+v %v", cfg, err)
	}
}

func TestValidate(t *testing.T) {
	c := Defaults()
	c.QMPDir, c.LibvirtURI = "/x", "qemu:///system"
	c.Interval = 100 * time.Millisecond
	c.LogLevel = "loud"
	err := c.Validate()
	for _, want := range []string{"exclude each other", "too short", "log_level"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate lacks %q: %v", want, err)
		}
	}
}

// Write-blocking copies stay off unless the file turns them on.
func TestConfigAllowWriteBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.hcl")
	for body, want := range map[string]bool{"": false, "jobs {\n  allow_write_blocking = true\n}\n": true, "jobs {\n  max_attempts = 2\n}\n": false} {
		os.WriteFile(path, []byte(body), 0o644)
		cfg, err := Load(path)
		if err != nil || cfg.JobsConfig.AllowWriteBlocking != want {
			t.Errorf("%q: allow=%v %v, want %v", body, cfg.JobsConfig.AllowWriteBlocking, err, want)
		}
	}
}

// histograms.enabled distinguishes unset (nil: rules decide) from false.
func TestConfigHistogramsEnabled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.hcl")
	for body, want := range map[string]string{"": "unset", "histograms {\n  boundaries_ms = [2, 20]\n}\n": "unset",
		"histograms {\n  enabled = false\n}\n": "false", "histograms {\n  enabled = true\n}\n": "true"} {
		os.WriteFile(path, []byte(body), 0o644)
		cfg, err := Load(path)
		got := "unset"
		if cfg.HistogramsEnabled != nil {
			got = map[bool]string{true: "true", false: "false"}[*cfg.HistogramsEnabled]
		}
		if err != nil || got != want || len(cfg.Histograms) == 0 {
			t.Errorf("%q: enabled %s, boundaries %v, %v; want %s", body, got, cfg.Histograms, err, want)
		}
	}
}
