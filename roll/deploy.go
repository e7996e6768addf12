package roll

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/trust"
)

// Manifest is a staged release of one service: /staging/<svc>.
type Manifest struct {
	Version string    `json:"version"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	URLs    []string  `json:"urls"`
	Staged  time.Time `json:"staged"`
	By      string    `json:"by,omitempty"`
	// Infohash and Metainfo describe the release for BitTorrent; Seeders
	// are the BitTorrent addresses of the origin (the stage host). Hosts
	// find each other through /hosts.
	Infohash string   `json:"infohash,omitempty"`
	Metainfo []byte   `json:"metainfo,omitempty"`
	Seeders  []string `json:"seeders,omitempty"`
	// WebSeeds are HTTP origins of the release (BEP 19's role) that the
	// hosts fetching it over BitTorrent take the pieces no peer has from,
	// with ranged requests: `stage --detach` names its --url origins so.
	WebSeeds []string `json:"web_seeds,omitempty"`
	// Unpacked is the total size of the release's files once unpacked;
	// hosts check their free space for it and unpack no more. 0: not
	// declared (a manifest from before it was), and only the size is
	// checked.
	Unpacked int64 `json:"unpacked,omitempty"`
	// Signatures sign the release (trust.Release: the root, the service,
	// and the fields above) until Expires; hosts with [trust] keys run
	// nothing else.
	Expires    time.Time         `json:"expires,omitzero"`
	Signatures []trust.Signature `json:"signatures,omitempty"`
	// RollbackOf is the version a rollback takes the service back from:
	// this release is the one its fleet ran before. Empty: a release
	// staged by `stage`.
	RollbackOf string `json:"rollback_of,omitempty"`
	// Replaces is set on a rollback's release whose Signatures were made
	// for the rollback: hosts with [trust] keys that run Replaces take
	// it although it is older (trust.Release.Replaces).
	Replaces string `json:"replaces,omitempty"`
	// Rollbacks are signatures, made by `stage --sign-key` with this
	// release's, of the releases a rollback of it may go back to, each
	// with Replaces set to this release's version and this release's
	// Expires. A rollback, the operator's or the automatic one, uses them:
	// it needs no key.
	Rollbacks []RollbackSignature `json:"rollbacks,omitempty"`
}

// RollbackSignature signs the release Version (with the bytes SHA256) as a
// rollback of the manifest that carries it, until Expires.
type RollbackSignature struct {
	Version    string            `json:"version"`
	SHA256     string            `json:"sha256"`
	Expires    time.Time         `json:"expires"`
	Signatures []trust.Signature `json:"signatures"`
}

// Release is what a signature of m covers, for svc in the data center
// root.
func (m Manifest) Release(root, svc string) trust.Release {
	return trust.Release{Root: root, Service: svc, Version: m.Version, Size: m.Size, SHA256: m.SHA256,
		Unpacked: m.Unpacked, Infohash: m.Infohash, Expires: m.Expires, Replaces: m.Replaces}
}

// SignRollbacks signs, with key, each of back (the releases a rollback of
// m may go back to) as a rollback of m, for svc in root, until m.Expires,
// and keeps the signatures in m.Rollbacks. Releases of m's own version are
// skipped.
func (m *Manifest) SignRollbacks(key trust.PrivateKey, root, svc string, back ...Manifest) {
	for _, b := range back {
		if b.Version == m.Version || slices.ContainsFunc(m.Rollbacks, func(r RollbackSignature) bool { return r.Version == b.Version }) {
			continue
		}
		b.Expires, b.Replaces = m.Expires, m.Version
		m.Rollbacks = append(m.Rollbacks, RollbackSignature{Version: b.Version, SHA256: b.SHA256, Expires: b.Expires,
			Signatures: []trust.Signature{key.Sign(b.Release(root, svc))}})
	}
}

// asRollbackOf returns prev as the release of a rollback from cur: signed
// for it when cur carries a rollback signature of prev, with its own
// signatures otherwise (hosts with [trust] keys that run something newer
// then refuse it).
func asRollbackOf(prev, cur Manifest) Manifest {
	prev.RollbackOf, prev.Replaces = cur.Version, ""
	for _, r := range cur.Rollbacks {
		if r.Version == prev.Version && r.SHA256 == prev.SHA256 {
			prev.Replaces, prev.Expires, prev.Signatures = cur.Version, r.Expires, r.Signatures
		}
	}
	prev.Rollbacks = nil
	return prev
}

var (
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	infohashRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

func (m Manifest) validate() error {
	if err := ValidVersion(m.Version); err != nil {
		return err
	}
	if m.Size <= 0 {
		return fmt.Errorf("size %d: must be positive", m.Size)
	}
	if m.Unpacked < 0 {
		return fmt.Errorf("unpacked %d: must not be negative", m.Unpacked)
	}
	if !sha256RE.MatchString(m.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", m.SHA256)
	}
	for _, u := range m.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("url %q: want http:// or https://", u)
		}
	}
	if (m.Infohash == "") != (len(m.Metainfo) == 0) {
		return errors.New("infohash and metainfo: give both or neither")
	}
	if m.Infohash != "" && !infohashRE.MatchString(m.Infohash) {
		return fmt.Errorf("infohash %q: want 40 lower-case hex digits", m.Infohash)
	}
	for _, a := range m.Seeders {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("seeder %q: want host:port", a)
		}
	}
	if m.Replaces != "" {
		if err := ValidVersion(m.Replaces); err != nil {
			return fmt.Errorf("replaces: %w", err)
		}
	}
	for _, r := range m.Rollbacks {
		if err := ValidVersion(r.Version); err != nil {
			return fmt.Errorf("rollback signature: %w", err)
		}
	}
	if len(m.WebSeeds) > 0 && m.Infohash == "" {
		return errors.New("web_seeds: a release without BitTorrent metainfo has no use for web seeds")
	}
	if len(m.WebSeeds) > MaxWebSeeds {
		return fmt.Errorf("web_seeds: %d, more than %d", len(m.WebSeeds), MaxWebSeeds)
	}
	for _, u := range m.WebSeeds {
		if err := ValidWebSeed(u); err != nil {
			return fmt.Errorf("web seed: %w", err)
		}
	}
	return nil
}

// MaxWebSeeds is how many web seeds a manifest names at most.
const MaxWebSeeds = 16

// maxWebSeedLen bounds a web seed URL.
const maxWebSeedLen = 2048

// ValidWebSeed checks a web seed: an absolute http or https URL of a host,
// without a fragment, of at most 2048 bytes.
func ValidWebSeed(s string) error {
	if len(s) > maxWebSeedLen {
		return fmt.Errorf("%d bytes, more than %d", len(s), maxWebSeedLen)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an http:// or https:// URL", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q: no host", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q: a fragment has no place in a web seed", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", s, p)
		}
	}
	return nil
}

// Step is one step of the deploy queue: services that roll at the same time.
type Step struct {
	Services []string  `json:"services"`
	Ordered  time.Time `json:"ordered"`
	// Order names the order that queued the step, so that an order whose
	// answer a connection loss swallowed can find out that it committed.
	Order string `json:"order,omitempty"`
	// Rollback marks a step of a rollback: its services go back to their
	// previous release, after the services that depend on them.
	Rollback bool `json:"rollback,omitempty"`
	// AutoRollback: when a release of the step halts, it is rolled back
	// at once (`order --auto-rollback`).
	AutoRollback bool `json:"auto_rollback,omitempty"`
	// Now: the step's services take turns outside their maintenance
	// windows too (`order --now`).
	Now bool `json:"now,omitempty"`
}

func (s Step) validate() error {
	if len(s.Services) == 0 {
		return errors.New("services: empty")
	}
	return validNames("services", "service", s.Services)
}

// Failure is what halted a service's deploy: a host whose new version did
// not become healthy.
type Failure struct {
	Host    string    `json:"host"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

func (f Failure) String() string { return fmt.Sprintf("%s on %s: %s", f.Host, f.Version, f.Reason) }

// Control is the operator's say over one service's deploy: /roll/<svc>.
type Control struct {
	Paused bool     `json:"paused"`
	Halted *Failure `json:"halted,omitempty"`
	// Reason says why the service is paused, when dcroll paused it (a
	// canary waiting for promote); empty: an operator did.
	Reason string `json:"reason,omitempty"`
	// Canary counts the turns of a canary deploy: once Hosts turns are
	// taken, the turn that takes the last pauses the service.
	Canary *Canary `json:"canary,omitempty"`
}

// Canary is a canary deploy of a service: Hosts turns, then a pause until
// `dcroll promote`.
type Canary struct {
	Hosts int `json:"hosts"`
	Taken int `json:"taken"`
}

// CanaryWait is the pause reason of a canary whose hosts have taken their
// turns.
const CanaryWait = "canary: waiting for promote"

func (c Control) validate() error {
	if c.Canary != nil && c.Canary.Hosts < 1 {
		return fmt.Errorf("canary hosts %d: must be at least 1", c.Canary.Hosts)
	}
	return nil
}

// DeployControl is the operator's say over the whole deploy: /deploy.
type DeployControl struct {
	Paused bool `json:"paused"`
}

func (c DeployControl) validate() error { return nil }

// Turn is the data of /roll/<svc>/turns/<host>: a host mid-upgrade. It is
// ephemeral, so a host that dies mid-switch releases its turn.
type Turn struct {
	From    string    `json:"from"`
	To      string    `json:"to"`
	Started time.Time `json:"started"`
}

func (t Turn) validate() error { return ValidVersion(t.To) }

// Ready is the data of a ready-queue node.
type Ready struct {
	Version string `json:"version"`
	// Host is the queued host: a ticket's name does not say it (absent
	// below protocol 2, where the node's name does).
	Host string `json:"host,omitempty"`
}

func (r Ready) validate() error {
	if r.Host != "" && !config.ValidName(r.Host) {
		return fmt.Errorf("host %q is not a valid host name", r.Host)
	}
	return ValidVersion(r.Version)
}

// ReadyEntry is one host in a ready queue.
type ReadyEntry struct {
	Name string // the znode's name
	Host string
	Seq  int64
}

// ErrNotStaged means a service has no release staged.
var ErrNotStaged = errors.New("roll: nothing staged")

// ErrStagingInProgress means a staged release has not finished rolling.
var ErrStagingInProgress = errors.New("roll: a staging is in progress")

func (t Tree) step(name string) string           { return t.join("deploy", name) }
func (t Tree) readyNode(svc, name string) string { return t.join("staging", svc, "ready", name) }
func (t Tree) readyDir(svc string) string        { return t.join("staging", svc, "ready") }
func (t Tree) queuedDir(svc string) string       { return t.join("staging", svc, "queued") }
func (t Tree) queued(svc, host string) string    { return t.join("staging", svc, "queued", host) }
func (t Tree) turnsDir(svc string) string        { return t.join("roll", svc, "turns") }

// Turn is host's turn node for svc.
func (t Tree) Turn(svc, host string) string { return t.join("roll", svc, "turns", host) }

// getOptional reads a node whose absence or empty data means its zero value.
func (s *Store) getOptional(path string, v node) (*zk.Stat, error) {
	data, stat, err := s.conn.Get(path)
	if err != nil {
		return nil, fmt.Errorf("roll: get %s: %w", path, err)
	}
	if len(data) == 0 {
		return stat, nil
	}
	return stat, decode(path, data, v)
}

// Manifest reads svc's staged release.
func (s *Store) Manifest(svc string) (Manifest, error) {
	var m Manifest
	_, err := s.get(s.Tree.Staging(svc), &m)
	if errors.Is(err, zk.ErrNoNode) {
		return m, fmt.Errorf("%w for %s", ErrNotStaged, svc)
	}
	return m, err
}

// WatchManifest reads svc's staged release and leaves a watch on it; ok is
// false when nothing is staged (the watch then fires on creation).
func (s *Store) WatchManifest(svc string) (m Manifest, ok bool, ch <-chan struct{}, err error) {
	resync := s.resyncs.next()
	m, ok, zch, err := s.watchManifest(svc)
	if zch == nil {
		return m, ok, nil, err
	}
	return m, ok, watch(zch, resync), err
}

func (s *Store) watchManifest(svc string) (m Manifest, ok bool, ch <-chan zk.Event, err error) {
	path := s.Tree.Staging(svc)
	data, _, ch, err := s.conn.GetW(path)
	if errors.Is(err, zk.ErrNoNode) {
		var exists bool
		exists, _, ch, err = s.conn.ExistsW(path)
		if err != nil {
			return m, false, nil, fmt.Errorf("roll: watch %s: %w", path, err)
		}
		if exists {
			return s.watchManifest(svc)
		}
		return m, false, ch, nil
	}
	if err != nil {
		return m, false, nil, fmt.Errorf("roll: watch %s: %w", path, err)
	}
	if err := decode(path, data, &m); err != nil {
		return m, false, ch, err
	}
	return m, true, ch, nil
}

// Stage publishes a release of svc. Without replace it refuses while
// another release of svc is staged and not yet running on every online
// member, unless that release is this one (the same version and sha256):
// then only the manifest is written again and the ready queue is kept, so
// staging again after an error is safe. With replace it swaps the manifest
// and empties the ready queue in one transaction, so every host starts
// over with the new release.
//
// A transaction whose answer a connection loss swallowed may have
// committed: Stage then reads the manifest back and reports success when it
// holds what was written.
func (s *Store) Stage(svc string, m Manifest, replace bool) error {
	data, err := encode(m)
	if err != nil {
		return err
	}
	// Emptying the queue lists it, then deletes each ticket in the
	// transaction: a ticket that left in between (a turn taken, a host
	// gone; a rollout of thousands of hosts takes many a second) fails
	// the transaction with no node, and the queue is listed again.
	for attempt := 1; ; attempt++ {
		err := s.stage(svc, m, data, replace)
		if !errors.Is(err, errTicketLeft) {
			return err
		}
		if attempt == stageAttempts {
			return fmt.Errorf("roll: stage %s: the ready queue changed during each of %d tries; try again", svc, stageAttempts)
		}
	}
}

// stageAttempts bounds the tries of Stage when tickets leave the queue it
// empties.
const stageAttempts = 10

// errTicketLeft means a replace's transaction failed on a ticket that left
// the queue after it was listed: nothing was written.
var errTicketLeft = errors.New("roll: a ticket left the queue meanwhile")

func (s *Store) stage(svc string, m Manifest, data []byte, replace bool) error {
	path := s.Tree.Staging(svc)
	old, stat, err := s.conn.Get(path)
	if errors.Is(err, zk.ErrNoNode) {
		_, err := s.conn.Multi(
			&zk.CreateRequest{Path: path, Data: data, Acl: s.acls.of(path)},
			&zk.CreateRequest{Path: s.Tree.readyDir(svc), Acl: s.acls.of(s.Tree.readyDir(svc))},
			&zk.CreateRequest{Path: s.Tree.queuedDir(svc), Acl: s.acls.of(s.Tree.queuedDir(svc))},
		)
		return s.staged(svc, data, err)
	}
	if err != nil {
		return fmt.Errorf("roll: read %s: %w", path, err)
	}
	var prev Manifest
	prevOK := decode(path, old, &prev) == nil
	if !replace && prevOK && prev.Version == m.Version && prev.SHA256 == m.SHA256 {
		_, err := s.conn.Set(path, data, stat.Version)
		return s.staged(svc, data, err)
	}
	var keepPrev []any
	if prevOK && (!replace || prev.Version != m.Version) {
		done, err := s.rolledOut(svc, prev.Version)
		if err != nil {
			return err
		}
		if !done && !replace {
			return fmt.Errorf("%w: %s %s is staged and not yet running on every online host; use --replace to replace it", ErrStagingInProgress, svc, prev.Version)
		}
		if done && prev.Version != m.Version && prev.RollbackOf == "" {
			// The release the fleet runs is the one a rollback goes back
			// to. (A rollback's own release is kept already.)
			if keepPrev, err = s.keepPreviousOps(svc, old); err != nil {
				return err
			}
		}
	}
	ready, _, err := s.conn.Children(s.Tree.readyDir(svc))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("roll: list %s: %w", s.Tree.readyDir(svc), err)
	}
	ops := append([]any{&zk.SetDataRequest{Path: path, Data: data, Version: stat.Version}}, keepPrev...)
	for _, r := range ready {
		ops = append(ops, &zk.DeleteRequest{Path: s.Tree.readyNode(svc, r), Version: -1})
	}
	if errors.Is(err, zk.ErrNoNode) {
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.readyDir(svc), Acl: s.acls.of(s.Tree.readyDir(svc))})
	}
	queued, _, err := s.conn.Children(s.Tree.queuedDir(svc))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("roll: list %s: %w", s.Tree.queuedDir(svc), err)
	}
	for _, h := range queued {
		ops = append(ops, &zk.DeleteRequest{Path: s.Tree.queued(svc, h), Version: -1})
	}
	if errors.Is(err, zk.ErrNoNode) {
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.queuedDir(svc), Acl: s.acls.of(s.Tree.queuedDir(svc))})
	}
	res, err := s.conn.Multi(ops...)
	if errors.Is(err, zk.ErrNoNode) && len(res) == len(ops) && res[0].Error == nil {
		// Not the manifest (the first operation) but a listed node gone.
		return errTicketLeft
	}
	return s.staged(svc, data, err)
}

// staged turns the outcome of the write that stages data into Stage's
// answer. When a connection loss leaves it open whether the write took
// effect, the manifest is read back: it holds data (which carries the time
// it was staged) only if this very write committed.
func (s *Store) staged(svc string, data []byte, err error) error {
	switch {
	case err == nil:
		return nil
	case !lostAnswer(err):
		return fmt.Errorf("roll: stage %s (the ready queue or manifest changed meanwhile; try again): %w", svc, err)
	}
	path := s.Tree.Staging(svc)
	got, rerr := s.readBack(path)
	switch {
	case rerr == nil && bytes.Equal(got, data):
		return nil
	case rerr == nil || errors.Is(rerr, zk.ErrNoNode):
		return fmt.Errorf("roll: stage %s: %w", svc, err)
	}
	return fmt.Errorf("roll: stage %s: %v, then %v: whether it was staged is unknown; `dcroll status` shows it, and staging the same release again is safe", svc, err, rerr)
}

// readBack reads path after a sync, so that the server answering has seen
// every write committed before.
func (s *Store) readBack(path string) ([]byte, error) {
	if _, err := s.conn.Sync(path); err != nil {
		return nil, err
	}
	data, _, err := s.conn.Get(path)
	return data, err
}

// rolledOut reports whether every online host of svc runs version, and at
// least one does.
func (s *Store) rolledOut(svc, version string) (bool, error) {
	cur, err := s.CurrentOf(svc)
	if err != nil {
		return false, err
	}
	if len(cur) == 0 {
		return false, nil
	}
	for _, c := range cur {
		if c.Version != version {
			return false, nil
		}
	}
	return true, nil
}

// Unstage removes svc's manifest and its ready queue.
func (s *Store) Unstage(svc string) error {
	// As in Stage: tickets that leave (no node) or join (not empty) between
	// the list and the transaction fail it, and the queue is listed again.
	for attempt := 1; ; attempt++ {
		err := s.unstage(svc)
		if attempt == stageAttempts || !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrNotEmpty) {
			return err
		}
	}
}

func (s *Store) unstage(svc string) error {
	ready, _, err := s.conn.Children(s.Tree.readyDir(svc))
	if errors.Is(err, zk.ErrNoNode) {
		return s.deleteIfPresent(s.Tree.Staging(svc))
	}
	if err != nil {
		return fmt.Errorf("roll: list %s: %w", s.Tree.readyDir(svc), err)
	}
	var ops []any
	for _, r := range ready {
		ops = append(ops, &zk.DeleteRequest{Path: s.Tree.readyNode(svc, r), Version: -1})
	}
	ops = append(ops, &zk.DeleteRequest{Path: s.Tree.readyDir(svc), Version: -1})
	switch queued, _, err := s.conn.Children(s.Tree.queuedDir(svc)); {
	case errors.Is(err, zk.ErrNoNode): // staged before the ticket queue
	case err != nil:
		return fmt.Errorf("roll: list %s: %w", s.Tree.queuedDir(svc), err)
	default:
		for _, h := range queued {
			ops = append(ops, &zk.DeleteRequest{Path: s.Tree.queued(svc, h), Version: -1})
		}
		ops = append(ops, &zk.DeleteRequest{Path: s.Tree.queuedDir(svc), Version: -1})
	}
	ops = append(ops, &zk.DeleteRequest{Path: s.Tree.Staging(svc), Version: -1})
	if _, err := s.conn.Multi(ops...); err != nil {
		return fmt.Errorf("roll: unstage %s (try again): %w", svc, err)
	}
	return nil
}

// StagedServices lists the services with a staged release.
func (s *Store) StagedServices() ([]string, error) {
	names, _, err := s.conn.Children(s.Tree.join("staging"))
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.join("staging"), err)
	}
	sort.Strings(names)
	return names, nil
}

// JoinReady puts host in svc's ready queue for version and returns its
// node. The node is protected-sequential: a create whose answer was lost to
// a connection loss is found again, not made twice. Nodes the host left in
// the queue before, which a connection loss can leave behind while the
// session lives on, are removed first: the host would wait behind itself.
func (s *Store) JoinReady(svc, host, version string) (string, error) {
	data, err := encode(Ready{Version: version})
	if err != nil {
		return "", err
	}
	// An agent that may not take turns stays out of the queue, where it
	// would stand in front of the others.
	min, err := s.MinProtocol()
	if err != nil {
		return "", err
	}
	if err := s.protocolTooOld(min); err != nil {
		return "", err
	}
	if min >= ticketQueue {
		return s.joinTicket(svc, Ready{Version: version, Host: host})
	}
	queue, err := s.ReadyQueue(svc)
	if err != nil {
		return "", fmt.Errorf("roll: join the ready queue of %s: %w", svc, err)
	}
	// A node this session left earlier goes (one of an earlier session is
	// gone: Register cleared it; another session's stays).
	for _, e := range queue {
		if e.Host != host {
			continue
		}
		if err := s.deleteOwned(s.Tree.readyNode(svc, e.Name), s.conn.SessionID()); err != nil {
			return "", fmt.Errorf("roll: join the ready queue of %s: remove the earlier node %s: %w", svc, e.Name, err)
		}
	}
	path, err := s.conn.CreateProtectedEphemeralSequential(s.Tree.readyNode(svc, host+"-"), data, s.acls.of(s.Tree.readyNode(svc, host)))
	if err != nil {
		return "", fmt.Errorf("roll: join the ready queue of %s: %w", svc, err)
	}
	return path, nil
}

// LeaveReady removes a ready node that JoinReady returned, if it is still
// there: a host that gives up waiting leaves the queue cleanly, since after
// a connection loss its session, and the node, may live on.
func (s *Store) LeaveReady(ready string) error {
	if isTicket(ready) {
		return s.leaveTicket(ready)
	}
	return s.deleteIfPresent(ready)
}

// parseReady reads the host and sequence from a ready node's name,
// "_c_<guid>-<host>-<seq>".
func parseReady(name string) (ReadyEntry, bool) {
	rest, ok := strings.CutPrefix(name, "_c_")
	if !ok || len(rest) < 33+11 || rest[32] != '-' {
		return ReadyEntry{}, false
	}
	rest = rest[33:]
	host, seqStr := rest[:len(rest)-11], rest[len(rest)-10:]
	if rest[len(rest)-11] != '-' {
		return ReadyEntry{}, false
	}
	seq, err := strconv.ParseInt(seqStr, 10, 64)
	if err != nil || !config.ValidName(host) {
		return ReadyEntry{}, false
	}
	return ReadyEntry{Name: name, Host: host, Seq: seq}, true
}

// ReadyQueue lists svc's ready queue in arrival order. Nodes whose names
// are not dcroll's are skipped.
func (s *Store) ReadyQueue(svc string) ([]ReadyEntry, error) {
	names, _, err := s.conn.Children(s.Tree.readyDir(svc))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.readyDir(svc), err)
	}
	tickets, err := s.ticketQueue(svc, names)
	if err != nil {
		return nil, err
	}
	// Both forms at once only while min_protocol changes: the tickets
	// came later.
	return append(sortReady(names), tickets...), nil
}

func sortReady(names []string) []ReadyEntry {
	var q []ReadyEntry
	for _, n := range names {
		if e, ok := parseReady(n); ok {
			q = append(q, e)
		}
	}
	sort.Slice(q, func(i, j int) bool { return q[i].Seq < q[j].Seq })
	return q
}

// StepEntry is one queued step with its node name.
type StepEntry struct {
	Name string
	Step
	version int32
	// bad: the step's data does not decode. It names no service and
	// stays in the queue, a barrier the steps behind it wait at, until
	// the operator clears the queue (abort) or fixes the node.
	bad bool
}

// Steps reads the deploy queue, head first.
func (s *Store) Steps() ([]StepEntry, error) {
	steps, _, err := s.stepsW(false)
	return steps, err
}

// stepsW reads the deploy queue, head first; with watch, the returned
// channel fires when a step is added or removed. A step node is never
// changed once created, so each is read once per store (see stepCache).
func (s *Store) stepsW(watch bool) ([]StepEntry, <-chan zk.Event, error) {
	dir := s.Tree.Deploy()
	names, stat, ch, err := s.list(dir, watch)
	if err != nil {
		return nil, nil, fmt.Errorf("roll: list %s: %w", dir, err)
	}
	sort.Strings(names) // step-<10 digits>: name order is sequence order
	s.steps.keep(stat.Czxid, names)
	out := make([]StepEntry, 0, len(names))
	bad := map[string]string{}
	defer func() { s.skipBad(dir, bad) }()
	for _, n := range names {
		if st, ok := s.steps.get(stat.Czxid, n); ok {
			out = append(out, StepEntry{Name: n, Step: st})
			continue
		}
		var st Step
		nstat, err := s.get(s.Tree.step(n), &st)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if errors.Is(err, ErrBadNode) {
			bad[s.Tree.step(n)] = err.Error()
			out = append(out, StepEntry{Name: n, bad: true})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if nstat.Version == 0 {
			s.steps.put(stat.Czxid, n, st)
		}
		out = append(out, StepEntry{Name: n, Step: st, version: nstat.Version})
	}
	return out, ch, nil
}

// stepCache holds the steps a store has read. A step node is created once
// and never set, and its sequential name is not used again in the same
// deploy queue; a queue made anew (its root removed and seeded again)
// restarts the names, so the cache is kept per queue, by the creation zxid
// of /deploy.
type stepCache struct {
	mu    sync.Mutex
	queue int64 // /deploy's czxid
	steps map[string]Step
}

func (c *stepCache) get(queue int64, name string) (Step, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queue != queue {
		return Step{}, false
	}
	st, ok := c.steps[name]
	return st, ok
}

func (c *stepCache) put(queue int64, name string, st Step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queue != queue || c.steps == nil {
		c.queue, c.steps = queue, map[string]Step{}
	}
	c.steps[name] = st
}

// keep drops the steps that left the queue: those not in names.
func (c *stepCache) keep(queue int64, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queue != queue {
		return
	}
	maps.DeleteFunc(c.steps, func(name string, _ Step) bool { return !slices.Contains(names, name) })
}

// headStep reads the first step of the deploy queue; ok is false when the
// queue is empty.
func (s *Store) headStep(watch bool) (StepEntry, bool, <-chan zk.Event, error) {
	steps, ch, err := s.stepsW(watch)
	if err != nil || len(steps) == 0 {
		return StepEntry{}, false, ch, err
	}
	return steps[0], true, ch, nil
}

// AppendSteps adds steps to the end of the deploy queue in one transaction,
// without Order's checks: for tests and tools that build a deploy by hand.
func (s *Store) AppendSteps(steps [][]string) error {
	_, err := s.appendSteps(steps, rand.Text())
	return err
}

// ClearSteps empties the deploy queue in one transaction that also bumps
// the queue's version, so that an order checked against the old queue
// fails and checks again.
func (s *Store) ClearSteps() (int, error) {
	for {
		steps, err := s.Steps()
		if err != nil {
			return 0, err
		}
		ops, err := s.bumpDeploy()
		if err != nil {
			return 0, err
		}
		for _, st := range steps {
			ops = append(ops, &zk.DeleteRequest{Path: s.Tree.step(st.Name), Version: -1})
		}
		_, err = s.conn.Multi(ops...)
		if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
			continue // queued, advanced or paused meanwhile: look again
		}
		if err != nil {
			return 0, fmt.Errorf("roll: clear %s: %w", s.Tree.Deploy(), err)
		}
		return len(steps), nil
	}
}

// Control reads svc's deploy control; a node without data is the default.
func (s *Store) Control(svc string) (Control, error) {
	var c Control
	_, err := s.getOptional(s.Tree.Roll(svc), &c)
	return c, err
}

// UpdateControl changes svc's control with f, retrying if another writer
// got in between.
func (s *Store) UpdateControl(svc string, f func(*Control)) error {
	path := s.Tree.Roll(svc)
	for {
		var c Control
		stat, err := s.getOptional(path, &c)
		if err != nil {
			return err
		}
		f(&c)
		data, err := encode(c)
		if err != nil {
			return err
		}
		_, err = s.conn.Set(path, data, stat.Version)
		if errors.Is(err, zk.ErrBadVersion) {
			continue
		}
		if err != nil {
			return fmt.Errorf("roll: set %s: %w", path, err)
		}
		return nil
	}
}

// DeployControl reads the whole deploy's control.
func (s *Store) DeployControl() (DeployControl, error) {
	var c DeployControl
	_, err := s.getOptional(s.Tree.Deploy(), &c)
	return c, err
}

// SetDeployPaused pauses or resumes the whole deploy.
func (s *Store) SetDeployPaused(paused bool) error {
	data, err := encode(DeployControl{Paused: paused})
	if err != nil {
		return err
	}
	if _, err := s.conn.Set(s.Tree.Deploy(), data, -1); err != nil {
		return fmt.Errorf("roll: set %s: %w", s.Tree.Deploy(), err)
	}
	return nil
}

// Turns reads who holds a turn for svc.
func (s *Store) Turns(svc string) (map[string]Turn, error) {
	hosts, _, err := s.conn.Children(s.Tree.turnsDir(svc))
	if errors.Is(err, zk.ErrNoNode) {
		return map[string]Turn{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.turnsDir(svc), err)
	}
	hosts = s.validHosts(s.Tree.turnsDir(svc), hosts)
	out := map[string]Turn{}
	bad := map[string]string{}
	for _, h := range hosts {
		var t Turn
		_, err := s.get(s.Tree.Turn(svc, h), &t)
		switch {
		case err == nil:
			out[h] = t
		case errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, ErrBadNode):
			bad[s.Tree.Turn(svc, h)] = err.Error()
		default:
			return nil, err
		}
	}
	s.skipBad(s.Tree.turnsDir(svc), bad)
	return out, nil
}

// CheckUnqueuedDependencies refuses new steps that would let a service roll
// before one of its dependencies: a dependency that is staged, not yet
// rolled out, and neither already queued nor part of the new steps.
// ValidateSteps checks the order within the new steps.
func (s *Store) CheckUnqueuedDependencies(c Catalog, steps [][]string) error {
	queue, err := s.Steps()
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, st := range queue {
		for _, svc := range st.Services {
			listed[svc] = true
		}
	}
	for _, st := range steps {
		for _, svc := range st {
			listed[svc] = true
		}
	}
	for _, st := range steps {
		for _, svc := range st {
			for _, d := range c.dependencies(svc) {
				if listed[d.name] {
					continue
				}
				done, err := s.serviceDone(d.name)
				if err != nil {
					return err
				}
				if !done {
					return fmt.Errorf("%w: %q depends on %q, which is staged, not rolled out and not queued; order %q first",
						ErrBadOrder, svc, d.name, d.name)
				}
			}
		}
	}
	return nil
}

// LiftControl lifts svc's pause and halt, writing only if one is set, and
// returns what it lifted: the control as it was.
func (s *Store) LiftControl(svc string) (Control, error) {
	c, err := s.Control(svc)
	if err != nil || (!c.Paused && c.Halted == nil && c.Canary == nil) {
		return Control{}, err
	}
	var was Control
	err = s.UpdateControl(svc, func(c *Control) {
		was = *c
		*c = Control{} // a canary ends with its pause
	})
	if err != nil {
		return Control{}, err
	}
	return was, nil
}

// Aborted is what Abort did.
type Aborted struct {
	Cleared  bool               // the deploy queue was emptied
	Steps    int                // steps removed from it
	Unstaged map[string]string  // service -> the version unstaged ("?": unreadable)
	Lifted   map[string]Control // service -> the pause and halt lifted
	// Upgrading are the hosts mid-switch, by service: they finish it.
	Upgrading map[string]map[string]Turn
	// DeployPaused: the deploy's own pause stays until a resume.
	DeployPaused bool
}

// Abort drops the deploy: it empties the deploy queue (first, so that no
// step starts meanwhile), unstages every release with its ready queue, and
// lifts every service's pause and halt. Hosts keep what they run; a host
// mid-switch finishes it. The deploy's own pause stays. On an error it
// returns what it did so far; running it again finishes the job.
func (s *Store) Abort() (Aborted, error) {
	a := Aborted{Unstaged: map[string]string{}, Lifted: map[string]Control{}, Upgrading: map[string]map[string]Turn{}}
	services, err := s.Services()
	if err != nil {
		return a, err
	}
	if a.Steps, err = s.ClearSteps(); err != nil {
		return a, err
	}
	a.Cleared = true
	staged, err := s.StagedServices()
	if err != nil {
		return a, err
	}
	for _, svc := range staged {
		m, err := s.Manifest(svc)
		if err != nil {
			m.Version = "?" // unstage it all the same
		}
		if err := s.Unstage(svc); err != nil {
			return a, err
		}
		a.Unstaged[svc] = m.Version
	}
	for _, svc := range Catalog(services).Names() {
		lifted, err := s.LiftControl(svc)
		if err != nil {
			return a, err
		}
		if lifted.Paused || lifted.Halted != nil {
			a.Lifted[svc] = lifted
		}
		turns, err := s.Turns(svc)
		if err != nil {
			return a, err
		}
		if len(turns) > 0 {
			a.Upgrading[svc] = turns
		}
	}
	if dc, err := s.DeployControl(); err == nil {
		a.DeployPaused = dc.Paused
	}
	return a, nil
}
