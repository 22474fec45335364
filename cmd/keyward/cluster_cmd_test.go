package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/certs"
)

// routes answers each request by "METHOD PATH" with a JSON value.
func routes(m map[string]any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := m[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(404)
			_ = json.NewEncoder(w).Encode(wire.ErrorResponse{Error: wire.Error{Code: "no_such_route", Message: r.URL.Path}})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
}

// tableRows splits a table into its rows of fields.
func tableRows(out string) [][]string {
	var rows [][]string
	for line := range strings.Lines(out) {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestClusterMembers(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	members := []client.Member{
		{ID: "n1", GossipAddr: "10.0.0.1:8202", Status: "alive", Since: since,
			Meta: client.MemberMeta{RaftAddr: "10.0.0.1:8201", HTTPAddr: "https://10.0.0.1:8200", Role: "voter"}},
		{ID: "r1", GossipAddr: "10.0.0.9:8202", Status: "suspect", Meta: client.MemberMeta{RaftAddr: "10.0.0.9:8201", Role: "replica"}},
	}
	addr, reqs := fakeServer(t, routes(map[string]any{"GET /v1/sys/cluster/members": map[string]any{"members": members}}))
	env := map[string]string{"KEYWARD_ADDR": addr, "KEYWARD_TOKEN": "tok"}
	code, out, errOut := runCLI(env, "", "cluster", "members")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d err %q", code, errOut)
	}
	want := [][]string{
		{"ID", "GOSSIP-ADDR", "STATUS", "ROLE", "RAFT-ADDR"},
		{"n1", "10.0.0.1:8202", "alive", "voter", "10.0.0.1:8201"},
		{"r1", "10.0.0.9:8202", "suspect", "replica", "10.0.0.9:8201"},
	}
	if got := tableRows(out); !equalRows(got, want) {
		t.Errorf("table\n%s\nwant rows %q", out, want)
	}

	code, out, _ = runCLI(env, "", "cluster", "members", "-o", "json")
	var got struct{ Members []client.Member }
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Members) != 2 || got.Members[0].Meta.HTTPAddr != "https://10.0.0.1:8200" || !got.Members[0].Since.Equal(since) {
		t.Errorf("json: code %d out %s", code, out)
	}
	if (*reqs)[0].auth != "Bearer tok" || (*reqs)[0].path != "/v1/sys/cluster/members" {
		t.Errorf("request %+v", (*reqs)[0])
	}

	// Without gossip the node knows no members.
	addr, _ = fakeServer(t, routes(map[string]any{"GET /v1/sys/cluster/members": map[string]any{"members": nil}}))
	code, out, errOut = runCLI(map[string]string{"KEYWARD_ADDR": addr}, "", "cluster", "members")
	if code != 0 || len(tableRows(out)) != 1 || !strings.Contains(errOut, "gossip is off") {
		t.Errorf("no members: code %d out %q err %q", code, out, errOut)
	}
	code, out, _ = runCLI(map[string]string{"KEYWARD_ADDR": addr}, "", "cluster", "members", "-o", "json")
	if code != 0 || !strings.Contains(out, `"members": []`) {
		t.Errorf("no members json: code %d out %q", code, out)
	}
}

func equalRows(got, want [][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
			return false
		}
	}
	return true
}

func TestClusterPeers(t *testing.T) {
	peers := []client.Peer{
		{ID: "n1", Address: "10.0.0.1:8201", Voter: true, Leader: true, Reachable: true, State: "Leader", AppliedIndex: 42, Term: 3},
		{ID: "n2", Address: "10.0.0.2:8201", Voter: true, Reachable: true, State: "Follower", LastContact: 1234567 * time.Microsecond, AppliedIndex: 41, Term: 3},
		{ID: "n3", Address: "10.0.0.3:8201", Voter: true},
		{ID: "r1", Address: "10.0.0.9:8201", Reachable: true, State: "Follower", LastContact: -1, AppliedIndex: 0},
	}
	addr, _ := fakeServer(t, routes(map[string]any{"GET /v1/sys/cluster/peers": map[string]any{"peers": peers}}))
	env := map[string]string{"KEYWARD_ADDR": addr}
	code, out, errOut := runCLI(env, "", "cluster", "peers")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d err %q", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := "ID  ADDRESS        ROLE     LEADER  STATE     LAST-CONTACT  APPLIED-INDEX  REACHABLE"
	if len(lines) != 5 || lines[0] != header {
		t.Fatalf("table\n%s", out)
	}
	// The LEADER column holds "*" on the leader only.
	col := strings.Index(header, "LEADER")
	for i, l := range lines[1:] {
		if got, want := l[col:col+1] == "*", i == 0; got != want {
			t.Errorf("row %q: leader mark %v, want %v", l, got, want)
		}
	}
	want := [][]string{
		{"n1", "10.0.0.1:8201", "voter", "*", "Leader", "0s", "42", "yes"},
		{"n2", "10.0.0.2:8201", "voter", "Follower", "1.235s", "41", "yes"},
		{"n3", "10.0.0.3:8201", "voter", "-", "-", "-", "no"},
		{"r1", "10.0.0.9:8201", "replica", "Follower", "never", "0", "yes"},
	}
	if got := tableRows(out)[1:]; !equalRows(got, want) {
		t.Errorf("rows %q\nwant %q", got, want)
	}

	code, out, _ = runCLI(env, "", "cluster", "peers", "-o", "json")
	if code != 0 || !strings.Contains(out, `"last_contact_ns": 1234567000`) || !strings.Contains(out, `"peers": [`) {
		t.Errorf("json: code %d out %s", code, out)
	}
}

func TestClusterStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status client.ClusterStatus
		code   int
		err    string
	}{
		{"healthy", client.ClusterStatus{Healthy: true, Leader: "n1", Voters: 3, HealthyVoters: 3, Quorum: 2, FailureTolerance: 1}, 0, ""},
		{"degraded", client.ClusterStatus{Leader: "n1", Voters: 3, HealthyVoters: 1, Quorum: 2}, 1,
			"error: cluster is not healthy: 1 of 3 voters healthy, quorum is 2\n"},
		{"leaderless", client.ClusterStatus{Voters: 3, HealthyVoters: 2, Quorum: 2}, 1, "error: cluster is not healthy: no leader\n"},
	} {
		addr, _ := fakeServer(t, routes(map[string]any{"GET /v1/sys/cluster/status": tc.status}))
		env := map[string]string{"KEYWARD_ADDR": addr}
		code, out, errOut := runCLI(env, "", "cluster", "status")
		if code != tc.code || errOut != tc.err {
			t.Errorf("%s: code %d err %q, want %d %q", tc.name, code, errOut, tc.code, tc.err)
		}
		leader := tc.status.Leader
		if leader == "" {
			leader = "-"
		}
		want := [][]string{
			{"Healthy:", strconv.FormatBool(tc.status.Healthy)},
			{"Leader:", leader},
			{"Voters:", strconv.Itoa(tc.status.Voters)},
			{"Healthy", "voters:", strconv.Itoa(tc.status.HealthyVoters)},
			{"Replicas:", strconv.Itoa(tc.status.Replicas)},
			{"Quorum:", strconv.Itoa(tc.status.Quorum)},
			{"Failure", "tolerance:", strconv.Itoa(tc.status.FailureTolerance)},
		}
		if got := tableRows(out); !equalRows(got, want) {
			t.Errorf("%s: output\n%s\nwant rows %q", tc.name, out, want)
		}
		code, out, _ = runCLI(env, "", "cluster", "status", "-o", "json")
		var got client.ClusterStatus
		if code != tc.code || json.Unmarshal([]byte(out), &got) != nil || got != tc.status {
			t.Errorf("%s json: code %d out %s", tc.name, code, out)
		}
	}
}

func TestClusterChanges(t *testing.T) {
	ok := map[string]any{"joined": true, "removed": true, "transferred": true}
	addr, reqs := fakeServer(t, routes(map[string]any{
		"POST /v1/sys/cluster/join": ok, "POST /v1/sys/cluster/remove": ok, "POST /v1/sys/cluster/transfer-leader": ok,
	}))
	env := map[string]string{"KEYWARD_ADDR": addr}
	for _, tc := range []struct {
		args     []string
		out      string
		path     string
		body     string
		jsonWant string
	}{
		{[]string{"join", "10.0.0.1:8201"}, "Joined the cluster of 10.0.0.1:8201\n", "/v1/sys/cluster/join", `{"address":"10.0.0.1:8201"}`, `"joined": true`},
		{[]string{"remove", "n3"}, "Removed n3 from the cluster\n", "/v1/sys/cluster/remove", `{"node_id":"n3"}`, `"removed": true`},
		{[]string{"transfer-leader", "n2"}, "Transferred leadership to n2\n", "/v1/sys/cluster/transfer-leader", `{"node_id":"n2"}`, `"transferred": true`},
		{[]string{"transfer-leader"}, "Transferred leadership to the most up-to-date voter\n", "/v1/sys/cluster/transfer-leader", ``, `"transferred": true`},
	} {
		*reqs = nil
		code, out, errOut := runCLI(env, "", append([]string{"cluster"}, tc.args...)...)
		if code != 0 || out != tc.out || errOut != "" {
			t.Errorf("%q: code %d out %q err %q", tc.args, code, out, errOut)
			continue
		}
		if len(*reqs) != 1 || (*reqs)[0].method != "POST" || (*reqs)[0].path != tc.path || string((*reqs)[0].body) != tc.body {
			t.Errorf("%q: requests %+v", tc.args, *reqs)
		}
		code, out, _ = runCLI(env, "", append([]string{"cluster"}, append(tc.args, "-o", "json")...)...)
		if code != 0 || !strings.Contains(out, tc.jsonWant) {
			t.Errorf("%q json: code %d out %q", tc.args, code, out)
		}
	}
}

func TestClusterUsageErrors(t *testing.T) {
	addr, reqs := fakeServer(t, reply(200, map[string]any{}))
	env := map[string]string{"KEYWARD_ADDR": addr}
	for _, args := range [][]string{
		{"cluster"},
		{"cluster", "bogus"},
		{"cluster", "members", "extra"},
		{"cluster", "members", "--bogus"},
		{"cluster", "peers", "-o", "yaml"},
		{"cluster", "join"},
		{"cluster", "join", "http://10.0.0.1:8201"},
		{"cluster", "join", "10.0.0.1"},
		{"cluster", "join", "a:1", "b:2"},
		{"cluster", "remove"},
		{"cluster", "remove", ""},
		{"cluster", "transfer-leader", "a", "b"},
		{"cluster", "status", "--addr", "ftp://x"},
		{"cluster", "status", "--addr", " , "},
		{"snapshot"},
		{"snapshot", "save"},
		{"snapshot", "restore", "a", "b"},
		{"snapshot", "force", "x"},
		{"operator"},
		{"operator", "keygen", "x"},
		{"operator", "keygen", "--addr", addr},
	} {
		code, out, errOut := runCLI(env, "", args...)
		badAddr := slices.Contains(args, "--addr") // reported without the usage text, as for secret commands
		if code != 2 || out != "" || !badAddr && !strings.Contains(errOut, "Usage: keyward "+args[0]+" ") {
			t.Errorf("%q: code %d out %q err %q", args, code, out, errOut)
		}
		if len(args) > 1 && !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%q: err %q lacks the error line", args, errOut)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
	}
}

func TestClusterHelp(t *testing.T) {
	for _, g := range []commandGroup{clusterGroup(), snapshotGroup(), operatorGroup()} {
		for _, args := range [][]string{{g.name, "--help"}, {g.name, "help"}, {"help", g.name}} {
			code, out, _ := runCLI(nil, "", args...)
			if code != 0 || !strings.HasPrefix(out, "Usage: keyward "+g.name+" <subcommand>") {
				t.Errorf("%q: code %d out %q", args, code, out)
			}
		}
		for _, sc := range g.commands {
			for _, args := range [][]string{{g.name, sc.name, "--help"}, {g.name, sc.name, "-h"}, {"help", g.name, sc.name}, {g.name, "help", sc.name}} {
				code, out, _ := runCLI(nil, "", args...)
				if code != 0 || !strings.HasPrefix(out, "Usage: keyward "+g.name+" "+sc.name+" ") {
					t.Errorf("%q: code %d out %q", args, code, out)
				}
				if hasAddr := strings.Contains(out, "-addr") && strings.Contains(out, "-client-cert"); hasAddr == sc.offline {
					t.Errorf("%q: client flags shown %v for an offline=%v command", args, hasAddr, sc.offline)
				}
			}
		}
	}
	code, out, _ := runCLI(nil, "", "help")
	for _, g := range []string{"cluster", "snapshot", "operator"} {
		if code != 0 || !strings.Contains(out, "\n  "+g+" ") {
			t.Errorf("top-level usage lacks %s:\n%s", g, out)
		}
	}
}

func TestClusterAPIErrors(t *testing.T) {
	addr, _ := fakeServer(t, reply(503, wire.ErrorResponse{Error: wire.Error{Code: "no_leader", Message: "no leader"}}))
	env := map[string]string{"KEYWARD_ADDR": addr}
	for _, args := range [][]string{{"cluster", "peers"}, {"cluster", "status"}, {"cluster", "remove", "n2"}, {"snapshot", "force"}} {
		code, out, errOut := runCLI(env, "", args...)
		if code != 1 || out != "" || errOut != "error: no_leader: no leader\n" {
			t.Errorf("%q: code %d out %q err %q", args, code, out, errOut)
		}
	}
	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	code, _, errOut := runCLI(map[string]string{"KEYWARD_ADDR": dead}, "", "cluster", "status")
	if code != 1 || !strings.HasPrefix(errOut, "error: ") {
		t.Errorf("no server: code %d err %q", code, errOut)
	}
}

// tlsFixture is an https test server that requires a client certificate from its CA.
type tlsFixture struct {
	url                     string
	caCert, cliCert, cliKey string
	otherCA                 string
	mu                      sync.Mutex
	clientCN                []string // common names of the client certificates seen
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey, err := certs.CreateCA(dir, "ca", "test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := certs.CreateCert(certs.CertRequest{CACert: caCert, CAKey: caKey, Dir: dir, Name: "server",
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := certs.CreateCert(certs.CertRequest{CACert: caCert, CAKey: caKey, Dir: dir, Name: "operator",
		Validity: time.Hour, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := certs.CreateCA(filepath.Join(dir), "other", "other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := certs.APIServerConfig(srvCert, srvKey, caCert)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	f := &tlsFixture{caCert: caCert, cliCert: cliCert, cliKey: cliKey, otherCA: other}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.clientCN = append(f.clientCN, r.TLS.PeerCertificates[0].Subject.CommonName)
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(client.ClusterStatus{Healthy: true, Leader: "n1", Voters: 1, HealthyVoters: 1, Quorum: 1})
	}))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *tlsFixture) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.clientCN...)
}

func TestClusterClientTLS(t *testing.T) {
	f := newTLSFixture(t)

	// Flags; of a comma-separated --addr the first is used.
	code, out, errOut := runCLI(nil, "", "cluster", "status", "--addr", f.url+",http://127.0.0.1:1",
		"--ca-cert", f.caCert, "--client-cert", f.cliCert, "--client-key", f.cliKey)
	if code != 0 || !strings.Contains(out, "Healthy:") {
		t.Fatalf("flags: code %d out %q err %q", code, out, errOut)
	}
	// The environment, with a comma-separated KEYWARD_ADDR.
	env := map[string]string{"KEYWARD_ADDR": " " + f.url + " , http://127.0.0.1:1", "KEYWARD_CACERT": f.caCert,
		"KEYWARD_CLIENT_CERT": f.cliCert, "KEYWARD_CLIENT_KEY": f.cliKey}
	if code, _, errOut := runCLI(env, "", "cluster", "status"); code != 0 {
		t.Fatalf("env: code %d err %q", code, errOut)
	}
	if got := f.seen(); len(got) != 2 || got[0] != "operator" || got[1] != "operator" {
		t.Errorf("client certificates seen: %q", got)
	}

	// The wrong CA, or no client certificate, fails the handshake: exit 1.
	for name, e := range map[string]map[string]string{
		"other CA":       {"KEYWARD_ADDR": f.url, "KEYWARD_CACERT": f.otherCA, "KEYWARD_CLIENT_CERT": f.cliCert, "KEYWARD_CLIENT_KEY": f.cliKey},
		"no client cert": {"KEYWARD_ADDR": f.url, "KEYWARD_CACERT": f.caCert},
		"missing CA":     {"KEYWARD_ADDR": f.url, "KEYWARD_CACERT": filepath.Join(t.TempDir(), "none.pem")},
	} {
		if code, out, errOut := runCLI(e, "", "cluster", "status"); code != 1 || out != "" || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%s: code %d out %q err %q", name, code, out, errOut)
		}
	}

	// Usage mistakes: half a key pair; TLS flags with an http address.
	for _, args := range [][]string{
		{"cluster", "status", "--addr", f.url, "--client-cert", f.cliCert},
		{"cluster", "status", "--addr", "http://127.0.0.1:1", "--ca-cert", f.caCert},
		{"snapshot", "force", "--addr", "127.0.0.1:1", "--client-key", f.cliKey},
	} {
		if code, _, errOut := runCLI(nil, "", args...); code != 2 || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%q: code %d err %q", args, code, errOut)
		}
	}
	// TLS settings from the environment do not get in the way of an http address.
	addr, _ := fakeServer(t, reply(200, client.ClusterStatus{Healthy: true, Leader: "n1"}))
	if code, _, errOut := runCLI(map[string]string{"KEYWARD_ADDR": addr, "KEYWARD_CACERT": f.caCert}, "", "cluster", "status"); code != 0 {
		t.Errorf("http with KEYWARD_CACERT: code %d err %q", code, errOut)
	}
	// Secret commands share the client flags.
	if code, _, errOut := runCLI(nil, "", "secret", "list", "--addr", f.url, "--ca-cert", f.caCert); code != 1 || !strings.HasPrefix(errOut, "error: ") {
		t.Errorf("secret list without a client cert: code %d err %q", code, errOut)
	}
}
