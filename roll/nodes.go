package roll

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dcroll/dcroll/config"
)

// MaxNodeData caps what dcroll reads from or writes to one znode, except a
// release manifest (MaxManifestData). Every node
// it owns is small JSON; anything larger is not dcroll's and is refused.
const MaxNodeData = 64 << 10

// MaxManifestData caps a release manifest, which carries the release's
// BitTorrent metainfo: well under ZooKeeper's 1 MB limit.
const MaxManifestData = 768 << 10

// limit is the size cap of a node's data.
func limit(v node) int {
	if _, ok := v.(*Manifest); ok {
		return MaxManifestData
	}
	if _, ok := v.(Manifest); ok {
		return MaxManifestData
	}
	return MaxNodeData
}

// ErrBadNode is wrapped by every error about a znode's content.
var ErrBadNode = errors.New("roll: bad znode data")

// NodeError says which znode held bad data and why.
type NodeError struct {
	Path string
	Err  error
}

func (e *NodeError) Error() string   { return fmt.Sprintf("roll: znode %s: %v", e.Path, e.Err) }
func (e *NodeError) Unwrap() []error { return []error{ErrBadNode, e.Err} }

// node is implemented by every typed znode payload.
type node interface{ validate() error }

// decode parses the JSON data of the znode at path into v and validates it.
// Unknown fields are ignored so that an older agent can read what a newer
// one wrote; wrong types, missing required fields and bad values are errors.
func decode(path string, data []byte, v node) error {
	if max := limit(v); len(data) > max {
		return &NodeError{path, fmt.Errorf("%d bytes, more than the %d allowed", len(data), max)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &NodeError{path, errors.New("empty, expected a JSON object")}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return &NodeError{path, fmt.Errorf("invalid JSON: %v", err)}
	}
	if err := v.validate(); err != nil {
		return &NodeError{path, err}
	}
	return nil
}

// encode validates v and renders the JSON stored in a znode.
func encode(v node) ([]byte, error) {
	if err := v.validate(); err != nil {
		return nil, fmt.Errorf("roll: refusing to write: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("roll: encode: %w", err)
	}
	if max := limit(v); len(b) > max {
		return nil, fmt.Errorf("roll: refusing to write %d bytes, more than %d", len(b), max)
	}
	return b, nil
}

// Duration is a time.Duration written as "90s" in JSON and TOML.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: use a number and a unit, like 30s or 5m", b)
	}
	*d = Duration(v)
	return nil
}

// Quorum is how many members of a service must stay online: a count, or a
// percentage of the members (rounded up). JSON and TOML: 3 or "60%". A
// count of 0 means the service may be fully down during a turn (a
// single-instance service); it must be given explicitly, so a policy that
// lacks a quorum is never taken for one that allows an outage.
type Quorum struct {
	Count   int
	Percent int

	zero bool // an explicit 0 was given
}

// NoQuorum is the explicit quorum 0: the service may be fully down during
// a turn.
var NoQuorum = Quorum{zero: true}

// Zero reports whether the quorum is the explicit 0.
func (q Quorum) Zero() bool { return q.zero && q.Count == 0 && q.Percent == 0 }

// Need is the number of members that must stay online out of members.
func (q Quorum) Need(members int) int {
	if q.Percent > 0 {
		return int(math.Ceil(float64(members) * float64(q.Percent) / 100))
	}
	return q.Count
}

func (q Quorum) String() string {
	if q.Percent > 0 {
		return strconv.Itoa(q.Percent) + "%"
	}
	return strconv.Itoa(q.Count)
}

func (q Quorum) validate() error {
	switch {
	case q.Percent == 0 && q.Count < 0:
		return fmt.Errorf("quorum %d is below 0", q.Count)
	case q.Percent == 0 && q.Count == 0 && !q.zero:
		return errors.New("quorum: missing (a count like 2, or 0 for a service that may be fully down during a turn, or a percentage like \"60%\")")
	case q.Percent < 0 || q.Percent > 100:
		return fmt.Errorf("quorum %d%% is outside 1%%..100%%", q.Percent)
	}
	return nil
}

// MarshalJSON writes a count as a number and a percentage as "N%".
func (q Quorum) MarshalJSON() ([]byte, error) {
	if q.Percent > 0 {
		return json.Marshal(q.String())
	}
	return json.Marshal(q.Count)
}

// UnmarshalJSON reads 3 or "60%".
func (q *Quorum) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*q = Quorum{Count: n, zero: n == 0}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("quorum %s: want a count like 2 or a percentage like \"60%%\"", b)
	}
	return q.parse(s)
}

// UnmarshalTOML reads 3 or "60%" from a seed file.
func (q *Quorum) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*q = Quorum{Count: int(x), zero: x == 0}
		return nil
	case string:
		return q.parse(x)
	}
	return fmt.Errorf("quorum %v: want a count like 2 or a percentage like \"60%%\"", v)
}

func (q *Quorum) parse(s string) error {
	p, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(p)
	if err != nil {
		return fmt.Errorf("quorum %q: want a count like 2 or a percentage like \"60%%\"", s)
	}
	if !ok {
		*q = Quorum{Count: n, zero: n == 0}
		return nil
	}
	if n < 1 {
		return fmt.Errorf("quorum %q is below 1%%", s)
	}
	*q = Quorum{Percent: n}
	return nil
}

// HealthPolicy is how long a freshly switched host must stay healthy, and
// how long it may take to get there before the switch counts as failed.
// MaxFailedChecks, if not 0, fails the switch early: after that many health
// checks in a row have failed, counted from the start of the switch and
// again after each success.
type HealthPolicy struct {
	MinHealthy      Duration `json:"min_healthy" toml:"min_healthy"`
	Deadline        Duration `json:"deadline" toml:"deadline"`
	MaxFailedChecks int      `json:"max_failed_checks,omitempty" toml:"max_failed_checks"`
}

// Service is the policy of one service: /services/<svc>.
type Service struct {
	DependsOn   []string     `json:"depends_on" toml:"depends_on"`
	Quorum      Quorum       `json:"quorum" toml:"quorum"`
	MaxParallel int          `json:"max_parallel" toml:"max_parallel"`
	Health      HealthPolicy `json:"health" toml:"health"`
	// MemberTTL is how long a member may be offline (out of
	// /current/<svc>) before a percentage quorum stops counting it: the
	// percentage is then taken of the other members. nil: the default;
	// 0: members count until `dcroll forget`. A count quorum is a number
	// of hosts that must stay online, and does not change.
	MemberTTL *Duration `json:"member_ttl,omitempty" toml:"member_ttl"`
	// AutoRollback: a release of the service that halts is rolled back at
	// once, as `order --auto-rollback` asks for one deploy.
	AutoRollback bool `json:"auto_rollback,omitempty" toml:"auto_rollback"`
	// Windows are the maintenance windows: turns start only inside one
	// (a turn under way finishes). None: any time.
	Windows []string `json:"windows,omitempty" toml:"windows"`
	// CanaryHold ends a canary's pause by itself once the canaries have
	// been healthy that long (see RunCanaryHold). 0: the pause waits for
	// `dcroll promote`.
	CanaryHold Duration `json:"canary_hold,omitempty" toml:"canary_hold"`
}

// Default health policy for a service whose seed entry leaves it out.
const (
	DefaultMinHealthy = Duration(10 * time.Second)
	DefaultDeadline   = Duration(5 * time.Minute)
)

// DefaultMemberTTL is the member_ttl of a service whose seed entry leaves
// it out: a host gone for a day is taken as retired, not as down.
const DefaultMemberTTL = Duration(24 * time.Hour)

// TTL is the service's member_ttl; 0: members never expire.
func (s Service) TTL() time.Duration {
	if s.MemberTTL == nil {
		return time.Duration(DefaultMemberTTL)
	}
	return time.Duration(*s.MemberTTL)
}

func (s *Service) applyDefaults() {
	if s.MaxParallel == 0 {
		s.MaxParallel = 1
	}
	if s.Health.MinHealthy == 0 {
		s.Health.MinHealthy = DefaultMinHealthy
	}
	if s.Health.Deadline == 0 {
		s.Health.Deadline = DefaultDeadline
	}
	if s.DependsOn == nil {
		s.DependsOn = []string{}
	}
	if s.MemberTTL == nil {
		ttl := DefaultMemberTTL
		s.MemberTTL = &ttl
	}
}

func (s Service) validate() error {
	if err := s.Quorum.validate(); err != nil {
		return err
	}
	if s.MaxParallel < 1 {
		return fmt.Errorf("max_parallel %d is below 1", s.MaxParallel)
	}
	if s.Health.MinHealthy < 0 || s.Health.Deadline <= 0 {
		return fmt.Errorf("health: min_healthy %s and deadline %s must be positive", s.Health.MinHealthy, s.Health.Deadline)
	}
	if s.Health.MaxFailedChecks < 0 {
		return fmt.Errorf("health: max_failed_checks %d is negative", s.Health.MaxFailedChecks)
	}
	if _, err := parseWindows(s.Windows); err != nil {
		return fmt.Errorf("windows: %v", err)
	}
	if err := validCanaryHold(s.CanaryHold); err != nil {
		return err
	}
	if s.MemberTTL != nil && *s.MemberTTL < 0 {
		return fmt.Errorf("member_ttl %s is negative (0: members count until forgotten)", s.MemberTTL)
	}
	if s.Health.MinHealthy > s.Health.Deadline {
		return fmt.Errorf("health: min_healthy %s is longer than the deadline %s", s.Health.MinHealthy, s.Health.Deadline)
	}
	seen := map[string]bool{}
	for _, d := range s.DependsOn {
		if !config.ValidName(d) {
			return fmt.Errorf("depends_on: %q is not a valid service name", d)
		}
		if seen[d] {
			return fmt.Errorf("depends_on: %q is listed twice", d)
		}
		seen[d] = true
	}
	return nil
}

// Member is the data of /members/<svc>/<host>.
type Member struct {
	Joined time.Time `json:"joined"`
	// MachineID is the machine the host name belongs to (see Register);
	// absent: written by an agent that published none, and any machine
	// may take it.
	MachineID string `json:"machine_id,omitempty"`
}

func (m Member) validate() error {
	if m.Joined.IsZero() {
		return errors.New("joined: missing")
	}
	return validMachineID(m.MachineID)
}

// ProtocolVersion is the version of this page's protocol that this dcroll
// speaks (docs/PROTOCOL.md). It grows only with a change that is not
// compatible; the root says the minimum that may take turns.
//
// Protocol 2 brought the ticket queue (roll/queue.go).
const ProtocolVersion = 2

// Root is the data of the data center's root node.
type Root struct {
	// MinProtocol is the lowest protocol version an agent must speak to
	// take turns; 0 or absent: any.
	MinProtocol int `json:"min_protocol"`
}

func (r Root) validate() error {
	if r.MinProtocol < 0 {
		return fmt.Errorf("min_protocol %d is below 0", r.MinProtocol)
	}
	return nil
}

// Host is the data of /hosts/<host>: the agent that holds it.
type Host struct {
	Agent string `json:"agent"`
	// Protocol is the protocol version the agent speaks (absent: 1, the
	// agents from before it was published).
	Protocol int `json:"protocol,omitempty"`
	// MachineID is the machine whose agent holds the name (see Register);
	// absent: an agent that publishes none.
	MachineID string    `json:"machine_id,omitempty"`
	Started   time.Time `json:"started"`
	PeerAddr  string    `json:"peer_addr,omitempty"`
	// TorrentAddr is where the host's BitTorrent client takes peers.
	TorrentAddr string   `json:"torrent_addr,omitempty"`
	Rack        string   `json:"rack,omitempty"`
	Site        string   `json:"site,omitempty"`
	Services    []string `json:"services"`
	// Fetching is the host's downloads in progress, by service.
	Fetching map[string]Fetch `json:"fetching,omitempty"`
	// Stuck says, by service, why the host cannot get the staged release:
	// it cannot fetch it, verify it or unpack it.
	Stuck map[string]string `json:"stuck,omitempty"`
}

// MaxStuckReason is the longest reason a host publishes in Host.Stuck.
const MaxStuckReason = 1024

// Fetch is a download in progress.
type Fetch struct {
	Version string `json:"version"`
	Bytes   int64  `json:"bytes"`
	Size    int64  `json:"size"`
	Peers   int    `json:"peers"`
	// Via is how the bytes travel, ViaBitTorrent or ViaHTTP.
	Via string `json:"via,omitempty"`
	// Why says, for a download not over BitTorrent, what kept it off.
	Why string `json:"why,omitempty"`
	// Origin is the part of Bytes taken from the release's web seeds;
	// the rest came from peers.
	Origin int64 `json:"origin,omitempty"`
}

// The ways a Fetch travels.
const (
	ViaBitTorrent = "bittorrent"
	ViaHTTP       = "http"
)

// MaxFetchWhy is the longest Fetch.Why a host publishes.
const MaxFetchWhy = 512

func (h Host) validate() error {
	if err := validMachineID(h.MachineID); err != nil {
		return err
	}
	for svc, why := range h.Stuck {
		if !config.ValidName(svc) {
			return fmt.Errorf("stuck: %q is not a valid service name", svc)
		}
		if len(why) > MaxStuckReason {
			return fmt.Errorf("stuck %s: the reason is %d bytes, over %d", svc, len(why), MaxStuckReason)
		}
	}
	for svc, f := range h.Fetching {
		if !config.ValidName(svc) {
			return fmt.Errorf("fetching: %q is not a valid service name", svc)
		}
		if err := ValidVersion(f.Version); err != nil {
			return fmt.Errorf("fetching %s: %w", svc, err)
		}
		if f.Bytes < 0 || f.Size < 0 || f.Peers < 0 || f.Origin < 0 {
			return fmt.Errorf("fetching %s: negative counts", svc)
		}
		if f.Via != "" && f.Via != ViaBitTorrent && f.Via != ViaHTTP {
			return fmt.Errorf("fetching %s: via %q: want %q or %q", svc, f.Via, ViaBitTorrent, ViaHTTP)
		}
		if len(f.Why) > MaxFetchWhy {
			return fmt.Errorf("fetching %s: why is %d bytes, more than %d", svc, len(f.Why), MaxFetchWhy)
		}
	}
	if h.Agent == "" {
		return errors.New("agent: missing")
	}
	return validNames("services", "service", h.Services)
}

// validNames checks that every name in the field is a valid host or
// service name (what says which).
func validNames(field, what string, names []string) error {
	for _, n := range names {
		if !config.ValidName(n) {
			return fmt.Errorf("%s: %q is not a valid %s name", field, n, what)
		}
	}
	return nil
}

// Current is the data of /current/<svc>/<host>: the version the host serves
// healthily, and since when.
type Current struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"`
}

func (c Current) validate() error { return ValidVersion(c.Version) }

// versionRE is what a version may contain: it names a directory on every
// host and a path in a peer's URL.
var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidVersion checks a release version: it names a directory on every host.
func ValidVersion(v string) error {
	switch {
	case v == "":
		return errors.New("version: missing")
	case len(v) > 128:
		return fmt.Errorf("version %.20q...: longer than 128 bytes", v)
	case v == "." || v == ".." || v == "current" || strings.HasPrefix(v, "."):
		return fmt.Errorf("version %q is reserved", v)
	case !versionRE.MatchString(v):
		return fmt.Errorf("version %q: use letters, digits, '.', '_' and '-' only", v)
	}
	return nil
}
