package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"

	"github.com/qtune/qtune/config"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certPEM []byte, cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qtune test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certPEM, cert, key
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The listener takes a Prometheus web config: TLS and basic auth.
func TestListenerWebConfigTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, cert, key := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n", cert, key, hash)), 0o600)

	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = t.TempDir(), "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(t.TempDir(), "control.sock")
	cfg.Listen, cfg.WebConfigFile = freePort(t), webCfg
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(scheme, user, pass string) int {
		req, _ := http.NewRequest("GET", scheme+"://"+cfg.Listen+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(20 * time.Second)
	for get("https", "prom", "s3cret") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("no /metrics over TLS with the right password")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := get("https", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no password: %d, want 401", code)
	}
	if code := get("https", "prom", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := get("http", "prom", "s3cret"); code == http.StatusOK {
		t.Error("plain HTTP served /metrics")
	}
}

// A web config that does not load stops the agent at start, naming it.
func TestListenerBadWebConfigRefused(t *testing.T) {
	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = t.TempDir(), "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(t.TempDir(), "control.sock")
	cfg.Listen = "127.0.0.1:0"
	cfg.WebConfigFile = filepath.Join(t.TempDir(), "missing.yml")
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn}))
	err := a.Run(context.Background())
	if err == nil || !contains(err.Error(), "missing.yml") {
		t.Fatalf("Run with a missing web config: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
