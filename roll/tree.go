// Package roll is dcroll's ZooKeeper data model and, on top of it, the
// rolling-upgrade protocol. It owns every path under the data center's root
// and the JSON of every node; modes and the agent use it and never build a
// path or decode a znode themselves.
package roll

import "path"

// Tree names the znodes of one data center under its root (default /dc).
//
//	<root>/services/<svc>             persistent  Service: the policy
//	<root>/members/<svc>/<host>       persistent  Member: host is known to run svc
//	<root>/hosts/<host>               ephemeral   Host: agent presence
//	<root>/current/<svc>/<host>       ephemeral   Current: serving and healthy
//	<root>/staging/<svc>              persistent  release manifest
//	<root>/staging/<svc>/ready/<h>-N  eph. seq.   the ready queue
//	<root>/deploy/step-N              pers. seq.  the deploy queue
//	<root>/roll/<svc>                 persistent  Control: paused, halted
//	<root>/roll/<svc>/turns/<host>    ephemeral   Turn: a host mid-upgrade
//	<root>/refused/<host>@<machine>   ephemeral   Refusal: a machine refused the name
//	<root>/fleet/<svc>                persistent  FleetView: the advancer's count
//	<root>/history/e-NNNN             persistent  HistoryEvent: a ring of the last 1000
type Tree struct{ Root string }

// Top-level children of the root, in the order seed creates them.
var topLevel = []string{"services", "members", "hosts", "current", "staging", "deploy", "roll", "refused", "fleet"}

func (t Tree) join(elem ...string) string { return path.Join(append([]string{t.Root}, elem...)...) }

// Services is the parent of every service's policy node.
func (t Tree) Services() string { return t.join("services") }

// Service is the policy node of svc.
func (t Tree) Service(svc string) string { return t.join("services", svc) }

// Members is the parent of svc's member nodes.
func (t Tree) Members(svc string) string { return t.join("members", svc) }

// Member is host's membership node for svc.
func (t Tree) Member(svc, host string) string { return t.join("members", svc, host) }

// Hosts is the parent of the agents' presence nodes.
func (t Tree) Hosts() string { return t.join("hosts") }

// Host is host's presence node.
func (t Tree) Host(host string) string { return t.join("hosts", host) }

// CurrentDir is the parent of svc's serving hosts.
func (t Tree) CurrentDir(svc string) string { return t.join("current", svc) }

// Current is host's serving node for svc.
func (t Tree) Current(svc, host string) string { return t.join("current", svc, host) }

// Staging is svc's release manifest.
func (t Tree) Staging(svc string) string { return t.join("staging", svc) }

// Deploy is the deploy queue.
func (t Tree) Deploy() string { return t.join("deploy") }

// Roll is the parent of svc's turn-taking nodes.
func (t Tree) Roll(svc string) string { return t.join("roll", svc) }
