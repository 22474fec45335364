// Command keyward runs a keyward server node or talks to one as a client.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit status: 0 on success, 1 on
// failure, 2 on a usage mistake.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}.run(args)
}

// cli is the process environment a command runs in; tests fill it in-process.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// run dispatches the top-level command.
func (x cli) run(args []string) int {
	if len(args) == 0 {
		x.usage(x.stderr)
		return 2
	}
	switch args[0] {
	case "server":
		return runServer(args[1:])
	case "agent":
		return x.agentCmd(args[1:])
	case "secret":
		return x.secret(args[1:])
	case "cluster":
		return x.runGroup(clusterGroup(), args[1:])
	case "snapshot":
		return x.runGroup(snapshotGroup(), args[1:])
	case "operator":
		return x.runGroup(operatorGroup(), args[1:])
	case "bench":
		return x.bench(args[1:])
	case "tls":
		return x.tls(args[1:])
	case "version":
		return x.version(args[1:])
	case "auth":
		return x.auth(args[1:])
	case "help", "-h", "-help", "--help":
		return x.help(args[1:])
	}
	if g, ok := identityGroup(args[0]); ok {
		return x.runGroup(g, args[1:])
	}
	fmt.Fprintf(x.stderr, "error: unknown command %q\n\n", args[0])
	x.usage(x.stderr)
	return 2
}

// help prints the usage of the command named by args, or the top-level usage.
func (x cli) help(args []string) int {
	switch {
	case len(args) == 0:
		x.usage(x.stdout)
		return 0
	case args[0] == "secret":
		return x.secret(append(args[1:len(args):len(args)], "--help"))
	case args[0] == "cluster":
		return x.runGroup(clusterGroup(), append(args[1:len(args):len(args)], "--help"))
	case args[0] == "snapshot":
		return x.runGroup(snapshotGroup(), append(args[1:len(args):len(args)], "--help"))
	case args[0] == "operator":
		return x.runGroup(operatorGroup(), append(args[1:len(args):len(args)], "--help"))
	case args[0] == "server":
		return runServer([]string{"--help"})
	case args[0] == "agent":
		return x.agentCmd([]string{"--help"})
	case args[0] == "version":
		fmt.Fprintln(x.stdout, "Usage: keyward version\n\nPrints the version of this binary.")
		return 0
	case args[0] == "auth":
		return x.auth(append(args[1:len(args):len(args)], "--help"))
	}
	if g, ok := identityGroup(args[0]); ok {
		return x.runGroup(g, append(args[1:len(args):len(args)], "--help"))
	}
	fmt.Fprintf(x.stderr, "error: unknown help topic %q\n\n", args[0])
	x.usage(x.stderr)
	return 2
}

// usage prints the top-level usage to w.
func (x cli) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: keyward <command> [arguments]

Commands:
  server    run a keyward server node
  agent     sidecar: keep secrets fresh, render them to files, serve them locally
  secret    read and write secrets: put, get, list, versions, destroy, delete, restore
  cluster   inspect and change the cluster: members, peers, status, join, remove, transfer-leader
  snapshot  back up and restore the cluster's state: save, restore, force
  operator  init (the first admin token); offline: recover (lost quorum), keygen (gossip key)
  login     log in and print a token: userpass, approle, jwt
  token     the current token: self, renew, revoke
  user      users: create, delete, list
  service   service principals (mTLS, AppRole and JWT identities): create, delete, list
  role      roles and their members: create, delete, add-member, remove-member, list
  policy    grants of actions on secrets and path patterns: grant, revoke, list
  rotation  scheduled zero-downtime rotation of a secret: set, show, now, history, delete
  approle   AppRoles for workload logins: create, secret-id, delete, list
  auth      configure login methods: jwt set, jwt delete
  audit     the audit log: list, export, verify
  bench     generate load against nodes and report throughput, latency and memory
  tls       create a cluster CA and node certificates: ca create, cert create
  version   print the version of this binary
  help      print help; "keyward help secret [SUBCOMMAND]" for more

Client commands talk to $KEYWARD_ADDR (default `+defaultAddr+`; of a comma-separated list the
first) and send $KEYWARD_TOKEN; --addr and --token override them. For https, --ca-cert
($KEYWARD_CACERT) names the CA to trust and --client-cert/--client-key ($KEYWARD_CLIENT_CERT,
$KEYWARD_CLIENT_KEY) a client certificate to present.
`)
}
