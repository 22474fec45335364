package clustertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Partition cuts traffic between groups of nodes with iptables rules on the loopback
// interface (each node owns its own loopback address). It needs root and iptables; Heal
// removes every rule it added.
type Partition struct {
	t     testing.TB
	chain string
}

// Isolate drops all traffic between node i and every other node, both ways.
func (c *Cluster) Isolate(i int) *Partition {
	c.t.Helper()
	var others []int
	for j := range c.Nodes {
		if j != i {
			others = append(others, j)
		}
	}
	return c.Cut([]int{i}, others)
}

// Cut drops all traffic between every node of a and every node of b, both ways.
func (c *Cluster) Cut(a, b []int) *Partition {
	c.t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		c.t.Fatal("iptables is required for partition tests (make test installs it): ", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	p := &Partition{t: c.t, chain: "KW-" + strings.ToUpper(hex.EncodeToString(rnd[:]))}
	p.ipt("-N", p.chain)
	for _, i := range a {
		for _, j := range b {
			p.ipt("-A", p.chain, "-s", c.IPs[i], "-d", c.IPs[j], "-j", "DROP")
			p.ipt("-A", p.chain, "-s", c.IPs[j], "-d", c.IPs[i], "-j", "DROP")
		}
	}
	p.ipt("-I", "INPUT", "1", "-j", p.chain)
	c.t.Cleanup(p.Heal)
	return p
}

// Heal removes the partition; calling it twice is harmless.
func (p *Partition) Heal() {
	if p.chain == "" {
		return
	}
	_ = exec.Command("iptables", "-D", "INPUT", "-j", p.chain).Run()
	_ = exec.Command("iptables", "-F", p.chain).Run()
	_ = exec.Command("iptables", "-X", p.chain).Run()
	p.chain = ""
}

func (p *Partition) ipt(args ...string) {
	p.t.Helper()
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		p.t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// String names the rule chain, for logs.
func (p *Partition) String() string { return fmt.Sprintf("partition(%s)", p.chain) }
