package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

func init() {
	register(command{name: "state", summary: "check, export or import the agent's state store", run: runState, subcommands: []string{"check", "export", "import"}})
}

const stateUsage = "usage: qtune state check [--libvirt-socket PATH|--libvirt-uri URI]|export [-o FILE]|import FILE [--state-dir DIR]"

// runState: qtune state check|export|import.
func runState(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "check" && args[0] != "export" && args[0] != "import") {
		fmt.Fprintln(stderr, stateUsage)
		return exitUsage
	}
	verb := args[0]
	fs := newFlagSet("qtune state " + verb)
	fs.SetOutput(stderr)
	dir := fs.String("state-dir", "/var/lib/qtune", "the agent's state directory")
	outPath := fs.String("o", "", "export: write to this file instead of stdout")
	lvSocket := fs.String("libvirt-socket", "", "check: also compare with the records the domains of this libvirtd carry (its local socket)")
	lvURI := fs.String("libvirt-uri", "", "check: as --libvirt-socket, through a libvirt URI")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	path := state.StorePath(*dir)
	if verb == "import" {
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, stateUsage)
			return exitUsage
		}
		return stateImport(path, fs.Arg(0), stdout, stderr)
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stderr, "qtune state %s: %v\n", verb, err)
		return exitFailure
	}
	if verb == "check" {
		code := stateCheck(path, stdout, stderr)
		if *lvSocket == "" && *lvURI == "" {
			return code
		}
		return max(code, stateCheckDomains(ctx, path, virt.LibvirtOptions{Socket: *lvSocket, URI: *lvURI}, stdout, stderr))
	}
	return stateExport(path, *outPath, stdout, stderr)
}

func stateCheck(path string, stdout, stderr io.Writer) int {
	findings, err := state.CheckStoreFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "qtune state check: %v\n", err)
		if errors.Is(err, state.ErrStoreLocked) {
			fmt.Fprintln(stderr, "a running agent holds it; stop the agent first")
		}
		return exitFailure
	}
	if len(findings) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: %d problem(s)\n", path, len(findings))
	for _, f := range findings {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	return exitFailure
}

// stateCheckDomains: the store against the records the domains carry.
func stateCheckDomains(ctx context.Context, path string, o virt.LibvirtOptions, stdout, stderr io.Writer) int {
	found, err := checkDomainRecords(ctx, path, o)
	if err != nil {
		fmt.Fprintf(stderr, "qtune state check: %v\n", err)
		return exitFailure
	}
	if len(found) == 0 {
		fmt.Fprintln(stdout, "domain records: agree with the store")
		return exitOK
	}
	fmt.Fprintf(stdout, "domain records: %d disagreement(s)\n", len(found))
	for _, f := range found {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	return exitFailure
}

func stateExport(path, outPath string, stdout, stderr io.Writer) int {
	exp, err := state.ExportStoreFile(path, time.Now().UTC())
	if err != nil {
		fmt.Fprintf(stderr, "qtune state export: %v\n", err)
		return exitFailure
	}
	b, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "qtune state export: %v\n", err)
		return exitFailure
	}
	b = append(b, '\n')
	if outPath == "" {
		stdout.Write(b)
		return exitOK
	}
	if err := os.WriteFile(outPath, b, 0o600); err != nil {
		fmt.Fprintf(stderr, "qtune state export: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func stateImport(path, from string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(from)
	if err != nil {
		fmt.Fprintf(stderr, "qtune state import: %v\n", err)
		return exitFailure
	}
	var exp state.StoreExport
	if err := json.Unmarshal(b, &exp); err != nil {
		fmt.Fprintf(stderr, "qtune state import: %s: %v\n", from, err)
		return exitFailure
	}
	if err := state.ImportStoreFile(path, &exp); err != nil {
		fmt.Fprintf(stderr, "qtune state import: %s: %v\n", from, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "imported %s into %s\n", from, path)
	return exitOK
}
