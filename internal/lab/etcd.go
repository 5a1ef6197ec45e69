package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is a cluster of etcd members on loopback ports, each in a
// directory of the lab's and stopped by its PID.
type Etcd struct {
	Dir     string
	Members []*EtcdMember
}

// EtcdMember is one etcd process of a lab cluster.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	args      []string
	log       string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartEtcd starts an n-member cluster and waits until it has a leader.
func StartEtcd(ctx context.Context, dir string, n int) (*Etcd, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	e := &Etcd{Dir: dir}
	var initial []string
	for i := 0; i < n; i++ {
		m := &EtcdMember{Name: fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
		initial = append(initial, m.Name+"="+m.PeerURL)
		e.Members = append(e.Members, m)
	}
	for _, m := range e.Members {
		m.log = filepath.Join(dir, m.Name+".log")
		m.args = []string{"--name", m.Name, "--data-dir", filepath.Join(dir, m.Name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir),
			// A loaded 2-core test host misses 100 ms heartbeats now
			// and then; a longer election timeout keeps the leader.
			"--heartbeat-interval", "100", "--election-timeout", "1500"}
	}
	if err := e.StartAll(ctx); err != nil {
		e.StopAll()
		return nil, err
	}
	return e, nil
}

// StartEtcdT is StartEtcd for tests: three members in a temporary
// directory, every one stopped at the test's end.
func StartEtcdT(t testing.TB) *Etcd {
	t.Helper()
	NeedEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEtcd(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.StopAll(); err != nil {
			t.Errorf("stop etcd: %v", err)
		}
	})
	return e
}

// Endpoints are the members' client URLs.
func (e *Etcd) Endpoints() []string {
	var out []string
	for _, m := range e.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// StartAll starts every member that is not running and waits until the
// cluster has a leader.
func (e *Etcd) StartAll(ctx context.Context) error {
	for _, m := range e.Members {
		if err := m.start(); err != nil {
			return err
		}
	}
	_, err := e.Leader(ctx)
	return err
}

// StopAll stops every member by its PID.
func (e *Etcd) StopAll() error {
	var errs []error
	for _, m := range e.Members {
		errs = append(errs, m.Stop())
	}
	return errors.Join(errs...)
}

// StartMember starts member i again (its data kept) and waits until the
// cluster has a leader.
func (e *Etcd) StartMember(ctx context.Context, i int) error {
	if err := e.Members[i].start(); err != nil {
		return err
	}
	_, err := e.Leader(ctx)
	return err
}

// Leader waits until a running member says it leads, and returns its
// index.
func (e *Etcd) Leader(ctx context.Context) (int, error) {
	var last error
	for {
		for i, m := range e.Members {
			if m.PID() == 0 {
				continue
			}
			lead, err := m.isLeader(ctx)
			if err != nil {
				last = err
				continue
			}
			if lead {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcd cluster in %s has no leader: %v (%w)", e.Dir, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *EtcdMember) isLeader(ctx context.Context) (bool, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := cli.Status(sctx, m.ClientURL)
	if err != nil {
		return false, fmt.Errorf("status of %s: %w", m.Name, err)
	}
	return st.Leader != 0 && st.Leader == st.Header.MemberId, nil
}

// PID is the member's process id, 0 when it is not running.
func (m *EtcdMember) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	select {
	case <-m.done:
		return 0
	default:
		return m.cmd.Process.Pid
	}
}

func (m *EtcdMember) start() error {
	if m.PID() != 0 {
		return nil
	}
	out, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("etcd", m.args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: a test binary killed by -timeout (no cleanup runs)
	// leaves no etcd behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	return nil
}

// Stop stops the member by its PID: SIGTERM, then SIGKILL after 10 s.
func (m *EtcdMember) Stop() error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("etcd %s (pid %d) ignored SIGTERM and was killed", m.Name, cmd.Process.Pid)
	}
}

// Log is the tail of the member's output, for a failing test's message.
func (m *EtcdMember) Log() string {
	b, _ := os.ReadFile(m.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// freePorts finds n loopback ports free now, all different.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
