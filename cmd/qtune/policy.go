package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{
		name:        "policy",
		summary:     "check policy files, run their tests, list the metrics they may use",
		run:         runPolicy,
		subcommands: []string{"check", "test", "metrics"},
	})
}

const policyUsage = `usage:
  qtune policy check FILE|DIR...   validate policies; every problem with file:line:col
  qtune policy check --against-agent [--addr ADDR] [DIR]
                                   also compare with the set the running agent has in force
                                   (DIR defaults to the agent's policy directory)
  qtune policy test FILE...        run policy test files (*.test.hcl)
  qtune policy metrics             the metrics and functions a condition may use (Markdown)`

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, policyUsage)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return runPolicyCheck(ctx, args[1:], stdout, stderr)
	case "test":
		return policyTest(args[1:], stdout, stderr)
	case "metrics":
		if err := policy.WriteMetricsDoc(stdout); err != nil {
			return exitFailure
		}
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, policyUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "qtune policy: unknown subcommand %q\n%s\n", args[0], policyUsage)
	return exitUsage
}

func runPolicyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune policy check")
	fs.SetOutput(stderr)
	against := fs.Bool("against-agent", false, "compare with the set the running agent has in force")
	addr := fs.String("addr", defaultAddr, "the agent's listen address, or unix:PATH (with --against-agent)")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if *against {
		return checkAgainstAgent(ctx, *addr, paths, stdout, stderr)
	}
	return policyCheck(paths, stdout, stderr)
}

func policyCheck(paths []string, stdout, stderr io.Writer) int {
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "qtune policy check: give policy files or directories")
		return exitUsage
	}
	code := exitOK
	for _, p := range paths {
		set, problems, err := policy.LoadPath(p)
		for _, w := range problems.Warnings() {
			fmt.Fprintln(stderr, w)
		}
		for _, n := range problems.Notes() {
			fmt.Fprintln(stdout, n)
		}
		var ps policy.Problems
		switch {
		case errors.As(err, &ps):
			for _, e := range ps {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%s: %d errors\n", p, len(ps))
			code = exitFailure
		case err != nil:
			fmt.Fprintf(stderr, "qtune policy check: %v\n", err)
			code = exitFailure
		default:
			fmt.Fprintf(stdout, "%s: ok, %s", p, set.Summary())
		}
	}
	return code
}

func policyTest(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "qtune policy test: give test files")
		return exitUsage
	}
	passed, failed := 0, 0
	for _, f := range files {
		tf, err := policy.LoadTestFile(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
		set, _, err := loadPolicies(tf.Policies)
		if err != nil {
			fmt.Fprintf(stderr, "%s: policies: %v\n", f, err)
			return exitFailure
		}
		for _, t := range tf.Tests {
			fails := t.Run(set)
			if len(fails) == 0 {
				passed++
				fmt.Fprintf(stdout, "ok    %s: %s\n", f, t.Name)
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL  %s: %s\n", f, t.Name)
			for _, fl := range fails {
				fmt.Fprintf(stdout, "      %s\n", fl)
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// loadPolicies loads files and directories as one set.
func loadPolicies(paths []string) (*policy.Set, policy.Problems, error) {
	var files []string
	for _, p := range paths {
		set, _, err := policy.LoadPath(p)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, set.Files...)
	}
	return policy.LoadFiles(files...)
}
