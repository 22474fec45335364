package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/api/client"
)

// commandGroup is a command made of subcommands, such as `keyward cluster`.
type commandGroup struct {
	name     string
	summary  string
	commands []subcommand
}

// runGroup dispatches args[0] to the subcommand of g it names.
func (x cli) runGroup(g commandGroup, args []string) int {
	if len(args) == 0 {
		x.groupUsage(x.stderr, g)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			return x.runGroup(g, append(args[1:len(args):len(args)], "--help"))
		}
		x.groupUsage(x.stdout, g)
		return 0
	}
	for _, sc := range g.commands {
		if sc.name == args[0] {
			sc.group = g.name
			return x.runSubcommand(sc, args[1:])
		}
	}
	fmt.Fprintf(x.stderr, "error: unknown %s subcommand %q\n\n", g.name, args[0])
	x.groupUsage(x.stderr, g)
	return 2
}

// groupUsage prints the usage of g to w.
func (x cli) groupUsage(w io.Writer, g commandGroup) {
	fmt.Fprintf(w, "Usage: keyward %s <subcommand> [arguments]\n\n%s\n\nSubcommands:\n", g.name, g.summary)
	width := 0
	for _, sc := range g.commands {
		width = max(width, len(sc.name))
	}
	for _, sc := range g.commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, sc.name, firstLine(sc.summary))
	}
	fmt.Fprintf(w, "\nRun \"keyward %s <subcommand> --help\" for its flags.\n", g.name)
}

// clusterGroup is `keyward cluster`.
func clusterGroup() commandGroup {
	return commandGroup{
		name: "cluster",
		summary: "Inspects and changes the cluster membership as seen by the node at --addr. Changes are\n" +
			"carried out by the leader; any node passes them on.",
		commands: []subcommand{clusterMembersCommand(), clusterPeersCommand(), clusterStatusCommand(),
			clusterJoinCommand(), clusterRemoveCommand(), clusterTransferCommand()},
	}
}

func clusterMembersCommand() subcommand {
	return subcommand{
		name:     "members",
		synopsis: "[-o json]",
		summary: "Lists the nodes that the node at --addr sees over gossip.\n" +
			"Columns: ID GOSSIP-ADDR STATUS ROLE RAFT-ADDR. STATUS is alive, suspect, dead or left; ROLE is\n" +
			"voter or replica.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				members, err := s.c.Members(ctx)
				if err != nil {
					return err
				}
				if members == nil {
					members = []client.Member{}
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"members": members})
				}
				rows := make([][]any, 0, len(members))
				for _, m := range members {
					rows = append(rows, []any{m.ID, m.GossipAddr, m.Status, orDash(m.Meta.Role), orDash(m.Meta.RaftAddr)})
				}
				if err := table(s.stdout, "ID\tGOSSIP-ADDR\tSTATUS\tROLE\tRAFT-ADDR", rows); err != nil {
					return err
				}
				if len(members) == 0 {
					fmt.Fprintln(s.stderr, "(no members: gossip is off on this node)")
				}
				return nil
			}
		},
	}
}

func clusterPeersCommand() subcommand {
	return subcommand{
		name:     "peers",
		synopsis: "[-o json]",
		summary: "Lists the servers of the Raft configuration with the state each reports.\n" +
			"Columns: ID ADDRESS ROLE LEADER STATE LAST-CONTACT APPLIED-INDEX REACHABLE. ROLE is voter or\n" +
			"replica, LEADER marks the leader with *, LAST-CONTACT is the time since the server last heard\n" +
			"from the leader; \"-\" marks what an unreachable server could not tell.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				peers, err := s.c.Peers(ctx)
				if err != nil {
					return err
				}
				if peers == nil {
					peers = []client.Peer{}
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"peers": peers})
				}
				rows := make([][]any, 0, len(peers))
				for _, p := range peers {
					role, leader := "replica", ""
					if p.Voter {
						role = "voter"
					}
					if p.Leader {
						leader = "*"
					}
					state, contact, applied, reachable := "-", "-", "-", "no"
					if p.Reachable {
						state, contact = orDash(p.State), lastContact(p.LastContact)
						applied, reachable = strconv.FormatUint(p.AppliedIndex, 10), "yes"
					}
					rows = append(rows, []any{p.ID, p.Address, role, leader, state, contact, applied, reachable})
				}
				return table(s.stdout, "ID\tADDRESS\tROLE\tLEADER\tSTATE\tLAST-CONTACT\tAPPLIED-INDEX\tREACHABLE", rows)
			}
		},
	}
}

// lastContact formats a peer's time since it last heard from the leader.
func lastContact(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// orDash returns s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clusterStatusCommand() subcommand {
	return subcommand{
		name:     "status",
		synopsis: "[-o json]",
		summary: "Reports whether the cluster is healthy; exits 1 when it is not.\n" +
			"Healthy means a leader and a quorum of voters in touch with it. Also shows the leader, the\n" +
			"voters, the quorum and how many more voters may fail without losing it.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				st, err := s.c.ClusterStatus(ctx)
				if err != nil {
					return err
				}
				if s.json {
					err = printJSON(s.stdout, st)
				} else {
					err = table(s.stdout, "Healthy:\t"+strconv.FormatBool(st.Healthy), [][]any{
						{"Leader:", orDash(st.Leader)},
						{"Voters:", st.Voters},
						{"Healthy voters:", st.HealthyVoters},
						{"Replicas:", st.Replicas},
						{"Quorum:", st.Quorum},
						{"Failure tolerance:", st.FailureTolerance},
					})
				}
				if err != nil {
					return err
				}
				switch {
				case st.Healthy:
					return nil
				case st.Leader == "":
					return fmt.Errorf("cluster is not healthy: no leader")
				}
				return fmt.Errorf("cluster is not healthy: %d of %d voters healthy, quorum is %d",
					st.HealthyVoters, st.Voters, st.Quorum)
			}
		},
	}
}

func clusterJoinCommand() subcommand {
	return subcommand{
		name:     "join",
		synopsis: "ADDRESS [-o json]",
		summary: "Makes the node at --addr join the cluster of the member at ADDRESS.\n" +
			"ADDRESS is that member's cluster (Raft) address host:port, not its API URL. The node joins as\n" +
			"a voter, or as a replica if it was started as one.",
		minArgs: 1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				addr := args[0]
				if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" || strings.Contains(addr, "/") {
					return usagef("ADDRESS must be a member's cluster address host:port (its --raft-addr), not %q", addr)
				}
				if err := s.c.JoinCluster(ctx, addr); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"joined": true, "address": addr})
				}
				return say(s.stdout, "Joined the cluster of %s\n", addr)
			}
		},
	}
}

func clusterRemoveCommand() subcommand {
	return subcommand{
		name:     "remove",
		synopsis: "NODE_ID [-o json]",
		summary:  "Removes the server NODE_ID from the Raft configuration.",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("NODE_ID is empty")
				}
				if err := s.c.RemovePeer(ctx, args[0]); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"removed": true, "node_id": args[0]})
				}
				return say(s.stdout, "Removed %s from the cluster\n", args[0])
			}
		},
	}
}

func clusterTransferCommand() subcommand {
	return subcommand{
		name:     "transfer-leader",
		synopsis: "[NODE_ID] [-o json]",
		summary:  "Hands leadership to the voter NODE_ID, or to the most up-to-date voter.",
		minArgs:  0, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				id := ""
				if len(args) == 1 {
					if id = args[0]; id == "" {
						return usagef("NODE_ID is empty")
					}
				}
				if err := s.c.TransferLeader(ctx, id); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"transferred": true, "node_id": id})
				}
				if id == "" {
					return say(s.stdout, "Transferred leadership to the most up-to-date voter\n")
				}
				return say(s.stdout, "Transferred leadership to %s\n", id)
			}
		},
	}
}
