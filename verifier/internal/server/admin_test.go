//go:build cgo

package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

func adminCode(err error) string {
	var e *adminclient.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestAdminKeys runs every key operation of the admin API and checks that
// key material appears only in the answer that asked for it.
func TestAdminKeys(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ac := f.adminClient()
	ctx := context.Background()
	simPolicy := releasePolicy(t, "sim_development.rego")

	created, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "os-disk", ReleasePolicy: simPolicy, ReturnKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if created.Version != 1 || created.Key.Origin != adminclient.OriginPlatform || created.Key.LatestVersion != 1 || created.KeyMaterial == "" {
		t.Fatalf("create: %+v", created)
	}
	secret := created.KeyMaterial
	quiet, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "quiet"})
	if err != nil || quiet.KeyMaterial != "" {
		t.Fatalf("create without return_key: %+v, %v", quiet, err)
	}
	imported := bytes.Repeat([]byte{0x5a}, 32)
	imp, err := ac.ImportKey(ctx, "customer", imported, simPolicy)
	if err != nil || imp.Key.Origin != adminclient.OriginCustomer || imp.KeyMaterial != "" {
		t.Fatalf("import: %+v, %v", imp, err)
	}

	for name, tt := range map[string]struct {
		op       func() error
		wantCode string
	}{
		"exists": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "os-disk"})
			return err
		}, wantCode: api.CodeKeyExists},
		"bad name": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "a/b"})
			return err
		}, wantCode: api.CodeMalformed},
		"bad policy": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "x", ReleasePolicy: "package p\nresult := "})
			return err
		}, wantCode: api.CodeInvalidPolicy},
		"import with return_key": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "x", KeyMaterial: adminapi.EncodeKey(imported), ReturnKey: true})
			return err
		}, wantCode: api.CodeMalformed},
		"import bad base64": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "x", KeyMaterial: "!!"})
			return err
		}, wantCode: api.CodeMalformed},
		"import short": {op: func() error { _, err := ac.ImportKey(ctx, "x", []byte("short"), ""); return err }, wantCode: api.CodeMalformed},
		"rotate unknown": {op: func() error {
			_, err := ac.RotateKey(ctx, "none", adminclient.RotateKeyRequest{})
			return err
		}, wantCode: api.CodeKeyUnknown},
		"rotate customer without material": {op: func() error {
			_, err := ac.RotateKey(ctx, "customer", adminclient.RotateKeyRequest{})
			return err
		}, wantCode: api.CodeMalformed},
		"delete only version": {op: func() error { _, err := ac.DeleteKey(ctx, "quiet", 1); return err }, wantCode: api.CodeConflict},
		"delete unknown":      {op: func() error { _, err := ac.DeleteKey(ctx, "none", 0); return err }, wantCode: api.CodeKeyUnknown},
		"show unknown":        {op: func() error { _, err := ac.GetKey(ctx, "none"); return err }, wantCode: api.CodeKeyUnknown},
		"set bad policy": {op: func() error {
			_, err := ac.SetReleasePolicy(ctx, "os-disk", "not rego")
			return err
		}, wantCode: api.CodeInvalidPolicy},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tt.op(); adminCode(err) != tt.wantCode {
				t.Fatalf("got %v, want %s", err, tt.wantCode)
			}
		})
	}

	rot, err := ac.RotateKey(ctx, "os-disk", adminclient.RotateKeyRequest{})
	if err != nil || rot.Version != 2 || rot.KeyMaterial != "" || len(rot.Key.Versions) != 2 {
		t.Fatalf("rotate: %+v, %v", rot, err)
	}
	if rot, err := ac.RotateKey(ctx, "customer", adminclient.RotateKeyRequest{KeyMaterial: adminapi.EncodeKey(bytes.Repeat([]byte{1}, 32))}); err != nil || rot.Version != 2 {
		t.Fatalf("rotate customer key: %+v, %v", rot, err)
	}
	list, err := ac.ListKeys(ctx)
	if err != nil || len(list.Keys) != 3 || list.Keys[0].Name != "customer" || list.Keys[1].LatestVersion != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	show, err := ac.GetKey(ctx, "os-disk")
	if err != nil || show.ReleasePolicy != simPolicy || len(show.Versions) != 2 {
		t.Fatalf("show: %+v, %v", show, err)
	}
	// Neither list nor show carries key material.
	for _, v := range []any{list, show} {
		b, _ := json.Marshal(v)
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(adminapi.EncodeKey(imported))) || bytes.Contains(b, []byte("key_material")) {
			t.Fatalf("key material in %s", b)
		}
	}

	// The old version stays releasable; deleting it stops that.
	tok := f.token(testguest.Options{}, "")
	if r := f.releaseReq("os-disk", tok, []byte(`{"version":1}`)); r.status != http.StatusOK {
		t.Fatalf("version 1 after rotation: %v", r)
	}
	if del, err := ac.DeleteKey(ctx, "os-disk", 1); err != nil || del.Version != 1 {
		t.Fatalf("delete version: %+v, %v", del, err)
	}
	if r := f.releaseReq("os-disk", tok, []byte(`{"version":1}`)); r.status != http.StatusNotFound {
		t.Fatalf("deleted version: %v", r)
	}
	// A policy change applies to the next release.
	if _, err := ac.SetReleasePolicy(ctx, "os-disk", ""); err != nil {
		t.Fatal(err)
	}
	if r := f.releaseReq("os-disk", tok, nil); r.status != http.StatusForbidden {
		t.Fatalf("after switching to the default policy: %v", r)
	}
	if _, err := ac.DeleteKey(ctx, "os-disk", 0); err != nil {
		t.Fatal(err)
	}
	if r := f.releaseReq("os-disk", tok, nil); r.status != http.StatusNotFound {
		t.Fatalf("deleted key: %v", r)
	}

	// Admin actions are audited, and none carries key material.
	all, err := f.srv.Store.AuditRecords(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int{}
	for _, r := range all {
		events[r.Event+"/"+r.Outcome]++
		b, _ := json.Marshal(r)
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("key material in audit record %s", b)
		}
	}
	for _, want := range []string{"admin.key.create/ok", "admin.key.import/ok", "admin.key.rotate/ok", "admin.key.delete/ok",
		"admin.key.set-policy/ok", "admin.key.create/key_exists"} {
		if events[want] == 0 {
			t.Errorf("no audit record %s in %v", want, events)
		}
	}
}

// TestAdminPolicies loads an appraisal policy and reference values through
// the admin API: they are validated, stored and in use at once, and a
// second replica picks them up from the store.
func TestAdminPolicies(t *testing.T) {
	a := newFixture(t, fixtureOpts{})
	b := newFixture(t, fixtureOpts{stateDir: a.cfg.StateDir})
	ac := a.adminClient()
	ctx := context.Background()
	src, err := os.ReadFile(simDevPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	newSrc := strings.Replace(string(src), `claims["development"] := true`, `claims["development"] := "admin-loaded"`, 1)

	for name, tt := range map[string]struct {
		kind, src string
		wantCode  string
	}{
		"unknown kind":          {kind: "sgx", src: newSrc, wantCode: api.CodeInvalidPolicy},
		"does not declare kind": {kind: "tdx", src: newSrc, wantCode: api.CodeInvalidPolicy},
		"does not compile":      {kind: "sim-sev-snp", src: "package p\nkinds := {", wantCode: api.CodeInvalidPolicy},
		"empty":                 {kind: "sim-sev-snp", src: "", wantCode: api.CodeMalformed},
		"no kinds":              {kind: "sim-sev-snp", src: "package p\nresult := {}", wantCode: api.CodeInvalidPolicy},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ac.LoadPolicy(ctx, tt.kind, []byte(tt.src)); adminCode(err) != tt.wantCode {
				t.Fatalf("got %v, want %s", err, tt.wantCode)
			}
		})
	}
	if c := claimsOf(t, a.token(testguest.Options{}, "")); c["development"] != true {
		t.Fatalf("a failed load changed the policy: %v", c["development"])
	}
	resp, err := ac.LoadPolicy(ctx, "sim-sev-snp", []byte(newSrc))
	if err != nil || resp.ID != "confidant.appraisal.sim_development" || resp.SHA256 != sha256hex([]byte(newSrc)) {
		t.Fatalf("load: %+v, %v", resp, err)
	}
	if c := claimsOf(t, a.token(testguest.Options{}, "")); c["development"] != "admin-loaded" {
		t.Fatalf("loaded policy not in use: %v", c["development"])
	}
	// The other replica sees it at its next poll (forced here).
	if c := claimsOf(t, b.token(testguest.Options{}, "")); c["development"] != true {
		t.Fatalf("replica b changed before polling: %v", c["development"])
	}
	if err := b.srv.Policies.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if c := claimsOf(t, b.token(testguest.Options{}, "")); c["development"] != "admin-loaded" {
		t.Fatalf("replica b after polling: %v", c["development"])
	}

	// Reference values: a broken file is refused; one without the guest's
	// measurement is loaded and denies it.
	if _, err := ac.LoadReferenceValues(ctx, []byte(`{"version": 2}`)); adminCode(err) != api.CodeInvalidPolicy {
		t.Fatalf("bad reference values: %v", err)
	}
	ref := reference()
	delete(simRef(ref), "measurements")
	rb, _ := json.Marshal(ref)
	if r, err := ac.LoadReferenceValues(ctx, rb); err != nil || r.SHA256 != sha256hex(rb) {
		t.Fatalf("reference values: %+v, %v", r, err)
	}
	r := a.attest(evidenceFor(t, a.nonce(), testguest.Options{}), "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, "no reference value for sim-sev-snp.measurements") {
		t.Fatalf("after loading reference values: %v", r)
	}
	// A restart keeps what was loaded.
	c := newFixture(t, fixtureOpts{stateDir: a.cfg.StateDir})
	if r := c.attest(evidenceFor(t, c.nonce(), testguest.Options{}), ""); r.status != http.StatusForbidden {
		t.Fatalf("restarted replica: %v", r)
	}
}

// TestAdminAudit lists, exports and verifies the audit log over the admin
// API, then detects a row changed behind the store's back.
func TestAdminAudit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ac := f.adminClient()
	ctx := context.Background()
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	f.releaseReq("k", tok, nil)
	f.releaseReq("none", tok, nil)
	f.releaseReq("k", "", nil)

	list, err := ac.Audit(ctx, 0, 100)
	if err != nil || len(list.Entries) != 5 || list.HeadID != 5 {
		t.Fatalf("audit list: %+v, %v", list, err)
	}
	want := []string{"admin.key.create/ok", "attest/affirming", "release/granted", "release/key_unknown", "release/invalid_token"}
	for i, e := range list.Entries {
		if got := e.Event + "/" + e.Outcome; got != want[i] || e.ID != int64(i+1) || len(e.PrevSHA256) != 64 {
			t.Errorf("entry %d: %s %+v, want %s", i, got, e, want[i])
		}
	}
	if g := list.Entries[2]; g.KeyName != "k" || g.KeyVersion != 1 || g.Subject == "" || g.TokenID == "" || g.TEE != "sim-sev-snp" {
		t.Errorf("release entry %+v", g)
	}
	if page, err := ac.Audit(ctx, 3, 1); err != nil || len(page.Entries) != 1 || page.Entries[0].ID != 4 {
		t.Fatalf("page: %+v, %v", page, err)
	}
	var buf bytes.Buffer
	n, err := ac.ExportAudit(ctx, &buf)
	if err != nil || n != 5 || strings.Count(buf.String(), "\n") != 5 {
		t.Fatalf("export: %d, %v\n%s", n, err, buf.String())
	}
	rep, err := ac.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Entries != 5 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if err := sqExec(f, "UPDATE audit SET outcome = 'granted' WHERE id = 4"); err != nil {
		t.Fatal(err)
	}
	rep, err = ac.VerifyAudit(ctx)
	if err != nil || rep.OK || len(rep.Problems) != 1 || rep.Problems[0].ID != 5 || !strings.Contains(rep.Problems[0].Reason, "entry 4 was modified") {
		t.Fatalf("after tampering: %+v, %v", rep, err)
	}
	if _, err := ac.Audit(ctx, 0, 5000); adminCode(err) != api.CodeMalformed {
		t.Fatalf("limit too large: %v", err)
	}
}

// TestAdminSocket serves the admin API on its unix socket: owner-only
// mode, reachable by the client, gone after shutdown; a second server on
// the same socket is refused.
func TestAdminSocket(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln, nil) }()
	sock := filepath.Join(f.cfg.StateDir, DefaultAdminSocket)
	var fi os.FileInfo
	for range 100 {
		if fi, err = os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v", fi, err)
	}
	ac, err := adminclient.NewClient(adminclient.ClientConfig{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.CreateKey(context.Background(), adminclient.CreateKeyRequest{Name: "via-socket"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AdminListener(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listener on the socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	// A stale socket file (a crashed server) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l2, err := f.srv.AdminListener()
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l2.Close()
}

// TestAdminTCP serves the admin API over TCP with mutual TLS: a client
// certificate from the configured CA is required.
func TestAdminTCP(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, "admin CA")
	other, otherKey := newCA(t, "other CA")
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := leaf(t, ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	writePEM(t, filepath.Join(dir, "srv.pem"), "CERTIFICATE", srvCert.Raw)
	writePEM(t, filepath.Join(dir, "srv.key"), "PRIVATE KEY", srvKey)

	f := newFixture(t, fixtureOpts{config: func(c *Config) {
		c.AdminListen = "tcp://127.0.0.1:0"
		c.AdminTLSCert, c.AdminTLSKey, c.AdminClientCA = filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key"), filepath.Join(dir, "ca.pem")
	}})
	ln, err := f.srv.AdminListener()
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: f.srv.AdminHandler, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	url := "https://" + ln.Addr().String()
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	client := func(ca *x509.Certificate, key []byte) *adminclient.Client {
		var certs []tls.Certificate
		if ca != nil {
			cert, k := leafFrom(t, ca, key, "operator")
			certs = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: k}}
		}
		c, err := adminclient.NewClient(adminclient.ClientConfig{URL: url, TLS: &tls.Config{RootCAs: roots, Certificates: certs}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caKeyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
	otherKeyDER, _ := x509.MarshalPKCS8PrivateKey(otherKey)
	if _, err := client(ca, caKeyDER).ListKeys(context.Background()); err != nil {
		t.Fatalf("client of the admin CA: %v", err)
	}
	if _, err := client(other, otherKeyDER).ListKeys(context.Background()); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if resp, err := plain.Get(url + adminclient.PathKeys); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was accepted")
	}
	if _, err := adminclient.NewClient(adminclient.ClientConfig{URL: url, TLS: &tls.Config{RootCAs: roots}}); err == nil {
		t.Fatal("the client accepted a TCP URL without a client certificate")
	}
}

func TestAdminConfig(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.StateDir, c.Policies, c.ReferenceValues = "/tmp/x", []string{"p"}, "r"
		return c
	}
	for name, tt := range map[string]struct {
		edit    func(*Config)
		wantErr string
	}{
		"default socket":  {edit: func(*Config) {}},
		"none":            {edit: func(c *Config) { c.AdminListen = "none" }},
		"tcp without TLS": {edit: func(c *Config) { c.AdminListen = "tcp://127.0.0.1:9000" }, wantErr: "mutual TLS"},
		"tcp on public port": {edit: func(c *Config) {
			c.AdminListen = "tcp://0.0.0.0:8443"
			c.AdminTLSCert, c.AdminTLSKey, c.AdminClientCA = "a", "b", "c"
		}, wantErr: "never shares the public port"},
		"unix with TLS":    {edit: func(c *Config) { c.AdminTLSCert = "a" }, wantErr: "go with --admin-listen tcp://"},
		"bad scheme":       {edit: func(c *Config) { c.AdminListen = "http://x" }, wantErr: "want unix:PATH"},
		"long socket path": {edit: func(c *Config) { c.AdminListen = "unix:/" + strings.Repeat("x", 120) }, wantErr: "longer than"},
	} {
		t.Run(name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
	c := base()
	c.Validate()
	if c.AdminListen != "unix:/tmp/x/admin.sock" || c.ReleaseAudience != c.Audience {
		t.Fatalf("defaults: %q %q", c.AdminListen, c.ReleaseAudience)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) (*x509.Certificate, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return cert, kder
}

// leafFrom issues a client certificate from a CA whose key is PKCS #8 DER.
func leafFrom(t *testing.T, ca *x509.Certificate, caKeyDER []byte, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(caKeyDER)
	if err != nil {
		t.Fatal(err)
	}
	cert, kder := leaf(t, ca, k.(*ecdsa.PrivateKey), cn, x509.ExtKeyUsageClientAuth)
	key, _ := x509.ParsePKCS8PrivateKey(kder)
	return cert, key.(*ecdsa.PrivateKey)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
