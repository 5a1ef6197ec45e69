package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

// demo boots a noisy writer that turns loud and calm in phases and a
// steady reader, runs qtune agent on them with the noisy-neighbour example
// policy, and shows what the agent sees and does until the time is up.
func demo(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("qtune-lab demo", flag.ContinueOnError)
	qtune := fs.String("qtune", "bin/qtune", "the qtune binary")
	duration := fs.Duration("duration", 150*time.Second, "how long to run")
	policyDir := fs.String("policy", "examples/policy.d", "policy directory (only noisy-neighbour.hcl is used)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, err := os.MkdirTemp("", "qtune-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	pol := filepath.Join(dir, "policy")
	os.MkdirAll(pol, 0o755)
	src, err := os.ReadFile(filepath.Join(*policyDir, "noisy-neighbour.hcl"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	os.WriteFile(filepath.Join(pol, "noisy-neighbour.hcl"), src, 0o644)

	noisy, _ := loadgen.ParsePhases("randwrite:100:10s,randwrite:2000:45s,randwrite:100:45s")
	steady, _ := loadgen.ParsePhases("randread:300:1h")
	_, cleanup, err := startVMs(ctx, dir, []vmSpec{{"noisy", noisy}, {"reader", steady}}, 256<<20)
	defer cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab:", err)
		return 1
	}
	addr := "127.0.0.1:19477"
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		addr = ln.Addr().String()
		ln.Close()
	}
	agentLog, _ := os.Create(filepath.Join(dir, "agent.log"))
	defer agentLog.Close()
	cmd := exec.Command(*qtune, "agent", "--qmp-dir", filepath.Join(dir, "qmp"), "--policy", pol,
		"--state-dir", filepath.Join(dir, "state"), "--listen", addr, "--interval", "2s", "--log-format", "text")
	cmd.Stdout, cmd.Stderr = agentLog, agentLog
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "qtune-lab: start the agent:", err)
		return 1
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	fmt.Printf("qtune agent watching 2 VMs with the noisy-neighbour policy (status at http://%s/v1/status)\n", addr)
	fmt.Println("noisy: quiet 10s, loud 45s (2000 writes/s), quiet 45s, repeating; reader: 300 reads/s throughout")
	watch(ctx, addr, *duration)
	fmt.Println("demo over: stopping the agent and the VMs")
	return 0
}

type demoStatus struct {
	VMs []struct {
		Name  string `json:"name"`
		Disks []struct {
			ReadIOPS  float64         `json:"read_iops"`
			WriteIOPS float64         `json:"write_iops"`
			QD        float64         `json:"queue_depth"`
			Throttle  json.RawMessage `json:"throttle"`
		} `json:"disks"`
	} `json:"vms"`
	Rules []struct {
		Rule, VM, State string
	} `json:"rules"`
	Actions []struct {
		At     time.Time `json:"at"`
		Rule   string    `json:"rule"`
		VM     string    `json:"vm"`
		Result string    `json:"result"`
		Before string    `json:"before"`
		After  string    `json:"after"`
	} `json:"actions"`
}

// watch prints one line per VM every two seconds, and every action once.
func watch(ctx context.Context, addr string, d time.Duration) {
	end := time.After(d)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	seen := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case <-t.C:
		}
		var st demoStatus
		resp, err := http.Get("http://" + addr + "/v1/status")
		if err != nil {
			continue
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		rules := map[string]string{}
		for _, r := range st.Rules {
			rules[r.VM] = r.State
		}
		var parts []string
		for _, vm := range st.VMs {
			for _, dk := range vm.Disks {
				th := "unthrottled"
				if len(dk.Throttle) > 0 && string(dk.Throttle) != "null" {
					th = "THROTTLED"
				}
				state := rules[vm.Name]
				if state == "" {
					state = "-"
				}
				parts = append(parts, fmt.Sprintf("%-6s r=%4.0f w=%4.0f qd=%.2f %-11s rule:%-9s", vm.Name, dk.ReadIOPS, dk.WriteIOPS, dk.QD, th, state))
			}
		}
		if len(parts) == 0 {
			continue // the agent's first cycles have no rates yet
		}
		fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), strings.Join(parts, " | "))
		for _, a := range st.Actions[min(seen, len(st.Actions)):] {
			fmt.Printf("%s  >>> %s %s on %s: %s -> %s\n", a.At.Local().Format("15:04:05"), a.Result, a.Rule, a.VM, a.Before, a.After)
		}
		seen = len(st.Actions)
	}
}
