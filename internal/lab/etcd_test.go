package lab

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The cluster keeps serving with its leader stopped, and comes back from
// all members stopped with its data.
func TestEtcdCluster(t *testing.T) {
	e := StartEtcdT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	lead, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := e.Members[lead].PID()
	if err := e.Members[lead].Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("leader pid %d still runs", pid)
	}
	if _, err := cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatalf("put with the leader stopped: %v", err)
	}
	if err := e.StopAll(); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, time.Second)
	if _, err := cli.Get(short, "k"); err == nil {
		t.Error("get answered with every member stopped")
	}
	stop()
	if err := e.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v2" {
		t.Fatalf("after restart: %v %v", r, err)
	}
}

func TestPackagesOf(t *testing.T) {
	if got := packagesOf([]string{"etcd", "virsh", "virtlogd", "libvirtd", "frob"}); got != "etcd-server libvirt-clients libvirt-daemon-system frob" {
		t.Errorf("packagesOf = %q", got)
	}
}
