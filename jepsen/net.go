package jepsen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Addrs are the addresses of one node.
type Addrs struct {
	IP            string // the address clients use to reach the node
	HTTP          string // API listen address
	RaftBind      string // cluster (Raft and RPC) listen address
	RaftAdvertise string // cluster address other nodes use
	Gossip        string // gossip listen address
}

// Network places nodes on hosts and cuts or degrades the links between them. Clients always
// reach every node; only node-to-node traffic is cut.
type Network interface {
	// Kind is "netns" or "proxy".
	Kind() string
	Addrs(i int) Addrs
	// Command returns the command that runs path with args on node i's host.
	Command(i int, path string, args ...string) *exec.Cmd
	// Attach tells the network which process is node i (the proxy network identifies
	// connections by process).
	Attach(i, pid int)
	// Partition drops all traffic from node j to node i whenever blocked(i, j) is true (the
	// caller makes it symmetric when it wants a two-way cut). It replaces any earlier cut.
	Partition(blocked func(i, j int) bool) error
	// Degrade adds latency (with jitter) and packet loss to node i's traffic.
	Degrade(i int, delay, jitter time.Duration, lossPct float64) error
	// Restore removes node i's latency and loss.
	Restore(i int) error
	// Close removes everything the network created.
	Close() error
}

// ErrNoNetns means network namespaces cannot be used here (not root, or no ip/nft tools).
var ErrNoNetns = errors.New("jepsen: network namespaces unavailable")

// netns runs each node in its own network namespace, linked to a bridge in the root namespace
// by a veth pair. Partitions are nftables (or iptables) rules inside the namespaces; latency
// and loss are tc netem on each namespace's interface.
type netns struct {
	prefix string // kwj<pid>
	subnet string // 10.A.B
	n      int
	fw     string // "nft" or "iptables"
	made   []func() error

	mu      sync.Mutex
	blocked [][]string // per node: addresses it drops
	loss    []float64  // per node: inbound loss in percent, when netem is missing
}

const (
	nsHTTPPort   = 8200
	nsRaftPort   = 8201
	nsGossipPort = 8202
)

// NewNetns creates n namespaces on a fresh bridge. It fails with ErrNoNetns when the host
// cannot do it, so the caller can fall back to the proxy network.
func NewNetns(n int) (Network, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrNoNetns)
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s missing", ErrNoNetns, tool)
		}
	}
	fw := "nft"
	if _, err := exec.LookPath("nft"); err != nil {
		if _, err := exec.LookPath("iptables"); err != nil {
			return nil, fmt.Errorf("%w: neither nft nor iptables", ErrNoNetns)
		}
		fw = "iptables"
	}
	sweepNetns()
	pid := os.Getpid()
	nw := &netns{prefix: fmt.Sprintf("kwj%d", pid), n: n, fw: fw, blocked: make([][]string, n), loss: make([]float64, n),
		subnet: fmt.Sprintf("10.%d.%d", 100+(pid>>8)%100, pid%256)}
	if err := nw.setup(); err != nil {
		_ = nw.Close()
		return nil, fmt.Errorf("%w: %w", ErrNoNetns, err)
	}
	return nw, nil
}

func (nw *netns) Kind() string { return "netns" }

func (nw *netns) ns(i int) string       { return fmt.Sprintf("%s-n%d", nw.prefix, i+1) }
func (nw *netns) bridge() string        { return nw.prefix + "br" }
func (nw *netns) ip(i int) string       { return fmt.Sprintf("%s.%d", nw.subnet, 11+i) }
func (nw *netns) hostVeth(i int) string { return fmt.Sprintf("%sv%d", nw.prefix, i+1) }

func (nw *netns) setup() error {
	br := nw.bridge()
	if err := run("ip", "link", "add", br, "type", "bridge"); err != nil {
		return err
	}
	nw.made = append(nw.made, func() error { return run("ip", "link", "del", br) })
	if err := runAll(
		[]string{"ip", "addr", "add", nw.subnet + ".1/24", "dev", br},
		[]string{"ip", "link", "set", br, "up"},
	); err != nil {
		return err
	}
	for i := 0; i < nw.n; i++ {
		ns, hv, pv := nw.ns(i), nw.hostVeth(i), fmt.Sprintf("%sp%d", nw.prefix, i+1)
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		nw.made = append(nw.made, func() error { return run("ip", "netns", "del", ns) })
		if err := runAll(
			[]string{"ip", "link", "add", hv, "type", "veth", "peer", "name", pv},
			[]string{"ip", "link", "set", hv, "master", br},
			[]string{"ip", "link", "set", hv, "up"},
			[]string{"ip", "link", "set", pv, "netns", ns},
			[]string{"ip", "-n", ns, "link", "set", pv, "name", "eth0"},
			[]string{"ip", "-n", ns, "addr", "add", nw.ip(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		); err != nil {
			return err
		}
	}
	return nil
}

func (nw *netns) Addrs(i int) Addrs {
	ip := nw.ip(i)
	hp := func(p int) string { return ip + ":" + strconv.Itoa(p) }
	return Addrs{IP: ip, HTTP: hp(nsHTTPPort), RaftBind: hp(nsRaftPort), RaftAdvertise: hp(nsRaftPort), Gossip: hp(nsGossipPort)}
}

func (nw *netns) Command(i int, path string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", nw.ns(i), path}, args...)...)
}

func (nw *netns) Attach(int, int) {}

func (nw *netns) Partition(blocked func(i, j int) bool) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var errs []error
	for i := 0; i < nw.n; i++ {
		var from []string
		for j := 0; j < nw.n; j++ {
			if i != j && blocked(i, j) {
				from = append(from, nw.ip(j))
			}
		}
		nw.blocked[i] = from
		errs = append(errs, nw.firewall(i))
	}
	return errors.Join(errs...)
}

// firewall makes node i drop every packet from the addresses it blocks, and a share of all
// inbound packets when it has a loss rate. Callers hold nw.mu.
func (nw *netns) firewall(i int) error {
	ns, from, loss := nw.ns(i), nw.blocked[i], nw.loss[i]
	if nw.fw == "iptables" {
		if err := run("ip", "netns", "exec", ns, "iptables", "-F", "INPUT"); err != nil {
			return err
		}
		for _, a := range from {
			if err := run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", a, "-j", "DROP"); err != nil {
				return err
			}
		}
		if loss > 0 {
			return run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-m", "statistic", "--mode", "random",
				"--probability", fmt.Sprintf("%g", loss/100), "-j", "DROP")
		}
		return nil
	}
	script := "table inet kwj\ndelete table inet kwj\n"
	var rules []string
	if len(from) > 0 {
		rules = append(rules, fmt.Sprintf("ip saddr { %s } drop", strings.Join(from, ", ")))
	}
	if loss > 0 {
		rules = append(rules, fmt.Sprintf("numgen random mod 1000 < %d drop", int(loss*10)))
	}
	if len(rules) > 0 {
		script += fmt.Sprintf("table inet kwj {\n chain input {\n  type filter hook input priority 0; policy accept;\n  %s\n }\n}\n", strings.Join(rules, "\n  "))
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// Degrade uses tc netem when the kernel has it. Without netem (some container kernels), it
// falls back to a token bucket (tc tbf) that limits the link's rate so packets queue for up to
// about the delay, and to random drops in the firewall for the loss.
func (nw *netns) Degrade(i int, delay, jitter time.Duration, lossPct float64) error {
	args := []string{"netns", "exec", nw.ns(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
		"delay", fmt.Sprintf("%dms", delay.Milliseconds())}
	if jitter > 0 {
		args = append(args, fmt.Sprintf("%dms", jitter.Milliseconds()))
	}
	if lossPct > 0 {
		args = append(args, "loss", fmt.Sprintf("%g%%", lossPct))
	}
	err := run("ip", args...)
	if err == nil || !strings.Contains(err.Error(), "qdisc kind is unknown") {
		return err
	}
	if err := run("ip", "netns", "exec", nw.ns(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
		"rate", "2mbit", "burst", "8kb", "latency", fmt.Sprintf("%dms", max(delay.Milliseconds(), 1))); err != nil {
		return err
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.loss[i] = lossPct
	return nw.firewall(i)
}

func (nw *netns) Restore(i int) error {
	err := run("ip", "netns", "exec", nw.ns(i), "tc", "qdisc", "del", "dev", "eth0", "root")
	if err != nil && (strings.Contains(err.Error(), "No such file") || strings.Contains(err.Error(), "handle of zero")) {
		err = nil
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.loss[i] != 0 {
		nw.loss[i] = 0
		err = errors.Join(err, nw.firewall(i))
	}
	return err
}

func (nw *netns) Close() error {
	var errs []error
	for k := len(nw.made) - 1; k >= 0; k-- {
		errs = append(errs, nw.made[k]())
	}
	nw.made = nil
	return errors.Join(errs...)
}

// sweepNetns deletes namespaces and bridges left by earlier runs whose process is gone (a run
// killed with SIGKILL cannot clean up after itself).
func sweepNetns() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^kwj(\d+)-n\d+`)
	dead := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", m[1])); err == nil {
			continue // that run is still going
		}
		dead[m[1]] = true
		killNetnsPids(m[0])
		_ = run("ip", "netns", "del", m[0])
	}
	for pid := range dead {
		_ = run("ip", "link", "del", "kwj"+pid+"br")
	}
}

// killNetnsPids kills the processes left running in namespace ns.
func killNetnsPids(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func runAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}
