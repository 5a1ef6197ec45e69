package agent

import (
	"net"
	"testing"
)

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9477", true},
		{"[::1]:9477", true},
		{"0.0.0.0:9477", false},
		{"[::]:9477", false},
		{"192.0.2.1:9477", false},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(a); got != tc.want {
			t.Errorf("loopback(%s) = %v", tc.addr, got)
		}
	}
}
