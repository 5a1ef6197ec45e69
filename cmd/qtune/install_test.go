package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qtune/qtune/config"
)

// A fresh install changes nothing on the host: its config is in dry-run.
func TestInstallStartsInDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dest := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "..", "systemd", "install.sh"))
	cmd.Env = append(os.Environ(), "DESTDIR="+dest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	cfg, err := config.Load(filepath.Join(dest, "etc", "qtune", "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DryRun {
		t.Fatal("installed config is not in dry-run")
	}
	example, err := config.Load(filepath.Join("..", "..", "examples", "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// The policy directory starts empty: the examples are documentation.
	if hcl, _ := filepath.Glob(filepath.Join(dest, "etc", "qtune", "policy.d", "*.hcl")); len(hcl) > 0 {
		t.Fatalf("install put policies in force: %v", hcl)
	}
	for _, f := range []string{"usr/local/share/man/man1/qtune.1.gz", "usr/local/share/bash-completion/completions/qtune",
		"usr/local/share/doc/qtune/examples/policy.d/noisy-neighbour.hcl"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if example.Interval != cfg.Interval || example.StateDir != cfg.StateDir || example.PolicyDir != cfg.PolicyDir {
		t.Fatalf("installed config differs from the example beyond dry_run: %+v", cfg)
	}
}
