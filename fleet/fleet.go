// Package fleet bounds the copies a whole fleet of hosts runs into one
// storage backend: a named budget per backend caps the copies at once and
// their summed speed, held on etcd where every host sees it.
//
// A copy holds a slot: a key under its host's lease, taken in one
// transaction that checks the count and the bandwidth held and a guard
// key, so two hosts racing for the last slot cannot both win. Copies that
// do not fit wait in line, served in the order they queued (etcd create
// revisions), so no host starves. A slot is held for the copy's whole
// life and given back at its end, or when its host's lease expires.
//
// The package knows nothing of jobs or VMs beyond the strings it stores;
// a job manager calls it through a small adapter, once per step of each
// copy. Per copy:
//
//	none ──Acquire──> waiting ──Acquire (first in line, fits)──> held
//	                                                            │  ^
//	                                 lease lost (etcd gone, TTL) │  │ retaken
//	                                                            v  │
//	                                                           lost (run at FloorSpeed)
//
// Release ends every state. See docs/fleet.md for the faults and their
// answers.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrUnknownBudget is returned for a copy naming a budget the
// configuration does not have.
var ErrUnknownBudget = errors.New("fleet: unknown budget")

// State is where one copy stands with the fleet.
type State int

const (
	None    State = iota // not known, or released
	Waiting              // queued, not granted yet
	Held                 // holds its slot in every budget it needs
	Lost                 // was running, its slot went with the lease: run at FloorSpeed
)

func (s State) String() string {
	return [...]string{"none", "waiting", "held", "lost"}[s]
}

// Copy is what a job asks the fleet for.
type Copy struct {
	JobID   string
	VM      string
	Disk    string
	Kind    string   // mirror, stream, convert
	Speed   uint64   // bytes/s the copy runs at; 0 = unbounded (counts as each budget's max_speed)
	Budgets []string // names from Match; taken all at once or not at all
}

type entry struct {
	c       Copy
	state   State
	running bool // the copy moves data: it queues before copies not started
	lease   clientv3.LeaseID
}

// Fleet is this host's view of the fleet's budgets.
type Fleet struct {
	cfg     Config
	host    string
	log     hclog.Logger
	cli     *clientv3.Client
	budgets map[string]Budget
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	catchingUp atomic.Bool    // a catch-up runs
	catching   sync.WaitGroup // it, for Close

	mu        sync.Mutex
	lease     clientv3.LeaseID // 0 while there is none
	leaseOK   bool
	ttl       time.Duration // as granted
	leaseErr  error         // why there is no lease
	lostTotal uint64
	jobs      map[string]*entry
	releases  map[string]bool // jobs whose release did not reach etcd yet
}

// New connects to etcd and starts keeping this host's lease. host names
// this agent fleet-wide and must be unique. New waits up to the dial
// timeout for the first lease and returns without one if etcd does not
// answer: until it does, Acquire answers "not granted" with the reason.
func New(ctx context.Context, cfg Config, host string, log hclog.Logger) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if host == "" {
		return nil, errors.New("fleet: empty host name")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("fleet: tls: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// gRPC's and etcd's own chatter stays out of the agent's log;
		// what matters is logged here, in hclog.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client: %w", err)
	}
	f := &Fleet{cfg: cfg, host: host, log: log, cli: cli, budgets: map[string]Budget{},
		changed: make(chan struct{}, 1), done: make(chan struct{}),
		jobs: map[string]*entry{}, releases: map[string]bool{},
		leaseErr: errors.New("no lease yet")}
	for _, b := range cfg.Budgets {
		f.budgets[b.Name] = b
	}
	lctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(lctx)
	wait, stop := context.WithTimeout(ctx, cfg.DialTimeout)
	defer stop()
	for !f.LeaseOK() && wait.Err() == nil {
		select {
		case <-wait.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return f, nil
}

// Close stops keeping the lease and closes the connection. It does not
// revoke the lease: the copies of this host keep running in their VMs, so
// their slots stay held until the TTL runs out, and an agent restarted in
// time takes them back (Retake).
func (f *Fleet) Close() error {
	f.cancel()
	<-f.done
	return f.cli.Close()
}

// LeaseOK reports whether this host holds a live lease now.
func (f *Fleet) LeaseOK() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaseOK
}

// TTL is the lease's time to live as etcd granted it (it may raise what
// was asked), or the configured one before the first grant.
func (f *Fleet) TTL() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ttl == 0 {
		return f.cfg.LeaseTTL
	}
	return f.ttl
}

// State is where the job stands now.
func (f *Fleet) State(jobID string) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.jobs[jobID]; e != nil {
		return e.state
	}
	return None
}

// Changed is signalled (coalesced, never blocking the fleet) whenever a
// held slot is lost or a lost one taken again: the job manager then sets
// its copies' speeds from State (FloorSpeed while Lost).
func (f *Fleet) Changed() <-chan struct{} { return f.changed }

// FloorSpeed is the speed, bytes/s, for a copy whose slot is Lost.
func (f *Fleet) FloorSpeed() uint64 { return f.cfg.FloorSpeed }

// Match returns the budgets holding any of dirs; see Config.Match.
func (f *Fleet) Match(dirs ...string) []Budget { return f.cfg.Match(dirs...) }

// Budgets returns the configured budgets.
func (f *Fleet) Budgets() []Budget { return append([]Budget(nil), f.cfg.Budgets...) }

// Cap is the highest speed c may run at and still be counted as asked:
// the lowest max_speed of its budgets (0 = no bound). A copy faster than
// that is counted at the cap, so the job manager should not exceed it.
func (f *Fleet) Cap(c Copy) uint64 {
	var lim uint64
	for _, name := range c.Budgets {
		if b, ok := f.budgets[name]; ok && b.MaxSpeed > 0 && (lim == 0 || b.MaxSpeed < lim) {
			lim = b.MaxSpeed
		}
	}
	return lim
}

func (f *Fleet) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *Fleet) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.cfg.RequestTimeout)
}
