package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
)

// operatorGroup is `keyward operator`.
func operatorGroup() commandGroup {
	return commandGroup{
		name:     "operator",
		summary:  "Tools for operators: init talks to a server; recover and keygen are offline and talk to none.",
		commands: []subcommand{operatorInitCommand(), operatorRecoverCommand(), operatorKeygenCommand()},
	}
}

// gossipKeyBytes is the size of the key operator keygen makes (AES-256 for memberlist).
const gossipKeyBytes = 32

func operatorKeygenCommand() subcommand {
	return subcommand{
		name:     "keygen",
		synopsis: "",
		summary: "Prints a new random 32-byte gossip key, base64-encoded.\n" +
			"Give it to every server of a cluster as --gossip-key.",
		offline: true,
		setup: func(*flag.FlagSet) action {
			return func(_ context.Context, s *session, _ []string) error {
				key := make([]byte, gossipKeyBytes)
				if _, err := rand.Read(key); err != nil {
					return fmt.Errorf("keygen: %w", err)
				}
				return say(s.stdout, "%s\n", base64.StdEncoding.EncodeToString(key))
			}
		},
	}
}

// peerList collects repeated --peer ID=ADDR flags.
type peerList struct {
	ids   []string
	addrs map[string]string
}

func (p *peerList) String() string { return "" }

func (p *peerList) Set(v string) error {
	id, addr, ok := strings.Cut(v, "=")
	if !ok || id == "" {
		return fmt.Errorf("want ID=ADDR, not %q", v)
	}
	if err := checkClusterAddr(addr); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if _, dup := p.addrs[id]; dup {
		return fmt.Errorf("%s is given twice", id)
	}
	if p.addrs == nil {
		p.addrs = map[string]string{}
	}
	p.ids = append(p.ids, id)
	p.addrs[id] = addr
	return nil
}

// checkClusterAddr checks that addr is a host:port other servers can dial.
func checkClusterAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || strings.Contains(addr, "/") {
		return fmt.Errorf("%q is not a cluster address host:port", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%q is not an address other servers can reach", addr)
	}
	return nil
}

func operatorRecoverCommand() subcommand {
	return subcommand{
		name:     "recover",
		synopsis: "--data-dir DIR --node-id ID --raft-addr ADDR [--peer ID=ADDR ...]",
		summary: "Rewrites a stopped node's Raft configuration to recover from a lost quorum.\n" +
			"The configuration in the data dir becomes exactly this node (ID at ADDR) plus each --peer;\n" +
			"all data is kept. ADDR is the cluster address the node advertises (its --advertise-raft,\n" +
			"else its --raft-addr) and may differ from the old one. Run it with the same servers on every\n" +
			"surviving node that is to stay, then start them. It refuses while a node runs on the data dir.",
		offline: true,
		setup: func(flags *flag.FlagSet) action {
			dataDir := flags.String("data-dir", "", "the stopped node's data `directory` (required)")
			nodeID := flags.String("node-id", "", "the node's `id` (required)")
			raftAddr := flags.String("raft-addr", "", "the node's cluster `address` host:port in the new configuration (required)")
			var peers peerList
			flags.Var(&peers, "peer", "another server `ID=ADDR` of the new configuration (repeatable)")
			return func(_ context.Context, s *session, _ []string) error {
				switch {
				case *dataDir == "":
					return usagef("--data-dir is required")
				case *nodeID == "":
					return usagef("--node-id is required")
				case *raftAddr == "":
					return usagef("--raft-addr is required")
				}
				if err := checkClusterAddr(*raftAddr); err != nil {
					return usagef("--raft-addr: %v", err)
				}
				servers := map[string]string{*nodeID: *raftAddr}
				for _, id := range peers.ids {
					if id == *nodeID {
						return usagef("--peer %s is this node; give it with --node-id and --raft-addr only", id)
					}
					servers[id] = peers.addrs[id]
				}
				byAddr := map[string]string{}
				for id, addr := range servers {
					if other, dup := byAddr[addr]; dup {
						return usagef("%s and %s have the same address %s", min(id, other), max(id, other), addr)
					}
					byAddr[addr] = id
				}
				db := filepath.Join(*dataDir, "raft", "raft.db")
				if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("recover: no Raft state in %s (%s does not exist)", *dataDir, db)
				} else if err != nil {
					return fmt.Errorf("recover: %w", err)
				}
				if err := cluster.Recover(*dataDir, fsm.New(nil), servers, s.stdout); err != nil {
					return err
				}
				return say(s.stdout, "%s", recoverNextSteps(*nodeID, *raftAddr, servers))
			}
		},
	}
}

// recoverNextSteps tells the operator what to do after a successful recover.
func recoverNextSteps(nodeID, raftAddr string, servers map[string]string) string {
	var b strings.Builder
	if len(servers) == 1 {
		fmt.Fprintf(&b, "Next: start the node with the same --node-id %s and --raft-addr %s (or --advertise-raft %s);\n"+
			"it will elect itself leader of a one-node cluster.\n", nodeID, raftAddr, raftAddr)
	} else {
		others := make([]string, 0, len(servers)-1)
		for id, addr := range servers {
			if id != nodeID {
				others = append(others, id+"="+addr)
			}
		}
		slices.Sort(others)
		fmt.Fprintf(&b, "Next: run the same recover, with the same servers, on each of %s (giving each its own\n"+
			"--node-id and --raft-addr and the others as --peer). Then start them all, this one with the same\n"+
			"--node-id %s and --raft-addr %s; once a majority runs they elect a leader.\n",
			strings.Join(others, ", "), nodeID, raftAddr)
	}
	b.WriteString("Wipe the data dir of any old server left out before it is started again, then add it back\n" +
		"with \"keyward cluster join\" or --join.\n")
	return b.String()
}
