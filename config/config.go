// Package config loads dcroll's host configuration in layers: the embedded
// default, the config file, DCROLL_* environment variables and command-line
// flags, later layers winning. It is strict: an unknown key or a bad value is
// an error that names it. It knows nothing of ZooKeeper or services beyond
// their settings.
package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/dcroll/dcroll/etc"
	"github.com/dcroll/dcroll/trust"
)

// DefaultPath is where a host keeps its config.
const DefaultPath = "/etc/dcroll/dcroll.toml"

// EnvPrefix starts every environment variable that sets a config key.
const EnvPrefix = "DCROLL_"

// ErrInvalid is wrapped by every error about a config value.
var ErrInvalid = errors.New("config: invalid")

// Config is a host's whole configuration.
type Config struct {
	ZooKeeper ZooKeeper          `koanf:"zookeeper"`
	Host      Host               `koanf:"host"`
	Log       Log                `koanf:"log"`
	Transfer  Transfer           `koanf:"transfer"`
	Trust     Trust              `koanf:"trust"`
	Metrics   Metrics            `koanf:"metrics"`
	Services  map[string]Service `koanf:"services"`
}

// Trust names the keys whose signatures a release needs on this host.
type Trust struct {
	// Keys are ed25519 public keys as dcroll keygen writes them; several
	// for a rotation. Empty: releases need no signature.
	Keys []string `koanf:"keys"`
}

// ZooKeeper says how to reach the ensemble and how to protect what dcroll
// writes there.
type ZooKeeper struct {
	Servers        []string      `koanf:"servers"`
	Root           string        `koanf:"root"`
	SessionTimeout time.Duration `koanf:"session_timeout"`
	ACL            string        `koanf:"acl"`
	User           string        `koanf:"user"`
	PasswordFile   string        `koanf:"password_file"`
	// OperatorID and AgentID are the roles' identities in ZooKeeper's ACLs,
	// "scheme:id" ("x509:CN=dcroll-agent", "digest:user:hash"), for the
	// roles ACL.
	OperatorID string `koanf:"operator_id"`
	AgentID    string `koanf:"agent_id"`
	// TLSCA names the PEM file of the certificates that sign the servers'
	// certificates. Set, dcroll speaks TLS to the ensemble's secure client
	// port and verifies each server; empty: plain TCP.
	TLSCA string `koanf:"tls_ca"`
	// TLSCert and TLSKey are this host's client certificate and its key
	// (mode 0600), presented to the servers; with ZooKeeper's x509
	// authentication, the certificate's subject is this host's identity.
	TLSCert string `koanf:"tls_cert"`
	TLSKey  string `koanf:"tls_key"`
	// TLSServerName is the name the servers' certificates must carry;
	// empty: the host of each server's address.
	TLSServerName string `koanf:"tls_server_name"`
}

// Host names this machine and where it keeps its local state.
type Host struct {
	Name     string `koanf:"name"`
	Rack     string `koanf:"rack"`
	Site     string `koanf:"site"`
	StateDir string `koanf:"state_dir"`
	// MachineIDFile holds the machine's identity, machine-id(5), which
	// tells this machine from another that has the same host name. Empty:
	// /etc/machine-id, else /var/lib/dbus/machine-id.
	MachineIDFile string `koanf:"machine_id_file"`
}

// Transfer says where the agent serves the releases it holds to its peers.
type Transfer struct {
	// Bind is the address of the management network: listen addresses
	// without a host (":7434") bind it. Empty: every interface.
	Bind             string `koanf:"bind"`
	Listen           string `koanf:"listen"`
	Advertise        string `koanf:"advertise"`
	TorrentListen    string `koanf:"torrent_listen"`
	TorrentAdvertise string `koanf:"torrent_advertise"`
	// UploadRate and DownloadRate cap BitTorrent traffic, in bytes per
	// second; 0 is no cap.
	UploadRate   int64 `koanf:"upload_rate"`
	DownloadRate int64 `koanf:"download_rate"`
	// MaxConns caps the peers' connections to the listen address; more
	// wait to be accepted.
	MaxConns int `koanf:"max_conns"`
	// PeerTokenFile holds a token (mode 0600) that peers must present to
	// fetch from this host, and that it presents to them. Empty: none.
	PeerTokenFile string `koanf:"peer_token_file"`
	// OriginRequests caps the ranged HTTP requests this host has open at
	// once to a release's web seeds (the origins of a `stage --detach`).
	OriginRequests int `koanf:"origin_requests"`
	// OriginRedirectHosts are the hosts (name, or name:port) an origin
	// may redirect this host to, such as an artifact store's storage
	// host. Empty: redirects stay on the origin's host.
	OriginRedirectHosts []string `koanf:"origin_redirect_hosts"`
}

// Metrics says where the agent serves its Prometheus metrics.
type Metrics struct {
	// Listen is the address of the /metrics endpoint; a listen address
	// without a host binds transfer.bind. Empty: off.
	Listen string `koanf:"listen"`
}

// Log selects the go-hclog level and output format.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Service says how this host starts, stops and health-checks one service.
// Either Start and Stop are commands the agent runs (for example through
// systemctl), or Run is a command the agent supervises itself.
type Service struct {
	Releases    string        `koanf:"releases"`
	Start       string        `koanf:"start"`
	Stop        string        `koanf:"stop"`
	Run         string        `koanf:"run"`
	StopTimeout time.Duration `koanf:"stop_timeout"`
	Health      Health        `koanf:"health"`
	// HotFiles are locked in memory while a release downloads, so the
	// transfer cannot evict them from the page cache. Relative paths are
	// taken in the running release's directory.
	HotFiles []string `koanf:"hot_files"`
	// User and Group run the supervised process (Run) and the health
	// command; empty: the agent's own. Credential is what they resolve to.
	User       string              `koanf:"user"`
	Group      string              `koanf:"group"`
	Credential *syscall.Credential `koanf:"-"`
}

// Health is one check: an HTTP GET answered 2xx, a TCP connect, or a
// command that exits 0.
type Health struct {
	HTTP     string        `koanf:"http"`
	TCP      string        `koanf:"tcp"`
	Command  string        `koanf:"command"`
	Interval time.Duration `koanf:"interval"`
	Timeout  time.Duration `koanf:"timeout"`
}

// Sources are the layers above the embedded default. File is read from disk
// when FileData is nil; Env is a list of KEY=value pairs (os.Environ());
// Flags maps config keys ("zookeeper.root") to values given on the command
// line.
type Sources struct {
	File         string
	FileData     []byte
	FileOptional bool
	Env          []string
	Flags        map[string]any
}

// Load builds the configuration from the embedded default and the sources.
func Load(src Sources) (*Config, error) {
	k := koanf.New(".")
	if err := loadLayer(k, "embedded default", etc.DefaultConfig); err != nil {
		return nil, err
	}
	data := src.FileData
	if data == nil && src.File != "" {
		b, err := os.ReadFile(src.File)
		switch {
		case err == nil:
			data = b
		case errors.Is(err, os.ErrNotExist) && src.FileOptional:
		default:
			return nil, fmt.Errorf("config: read %s: %w", src.File, err)
		}
	}
	if data != nil {
		if err := loadLayer(k, src.File, data); err != nil {
			return nil, err
		}
	}
	env, err := envLayer(src.Env)
	if err != nil {
		return nil, err
	}
	if err := mergeMap(k, "environment", env); err != nil {
		return nil, err
	}
	if err := mergeMap(k, "flags", src.Flags); err != nil {
		return nil, err
	}
	var c Config
	if err := decode(k, &c, nil); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := c.complete(); err != nil {
		return nil, err
	}
	return &c, nil
}

// loadLayer parses one TOML layer, rejecting unknown keys before merging it.
func loadLayer(k *koanf.Koanf, name string, data []byte) error {
	layer := koanf.New(".")
	if err := layer.Load(rawbytes.Provider(data), toml.Parser()); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	return mergeChecked(k, name, layer)
}

func mergeMap(k *koanf.Koanf, name string, m map[string]any) error {
	if len(m) == 0 {
		return nil
	}
	layer := koanf.New(".")
	if err := layer.Load(confmap.Provider(m, "."), nil); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	return mergeChecked(k, name, layer)
}

func mergeChecked(k *koanf.Koanf, name string, layer *koanf.Koanf) error {
	var c Config
	var md mapstructure.Metadata
	if err := decode(layer, &c, &md); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	if len(md.Unused) > 0 {
		sort.Strings(md.Unused)
		return fmt.Errorf("%w: %s: unknown key %q", ErrInvalid, name, md.Unused[0])
	}
	return k.Merge(layer)
}

func decode(k *koanf.Koanf, out *Config, md *mapstructure.Metadata) error {
	return k.UnmarshalWithConf("", out, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				durationWithUnit,
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			Metadata:         md,
			Result:           out,
			TagName:          "koanf",
			WeaklyTypedInput: false,
		},
	})
}

var durationType = reflect.TypeFor[time.Duration]()

// durationWithUnit refuses a duration given as a number: TOML's interval =
// 2 would otherwise be 2 nanoseconds.
func durationWithUnit(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType || from.Kind() == reflect.String {
		return data, nil
	}
	return nil, fmt.Errorf("duration %v has no unit: write a string with one, like \"%vs\" or \"%vm\"", data, data, data)
}

// envKeys maps each DCROLL_* variable to the config key it sets. Services
// are configured in the file only.
var envKeys = map[string]string{
	"DCROLL_ZOOKEEPER_SERVERS":          "zookeeper.servers",
	"DCROLL_ZOOKEEPER_ROOT":             "zookeeper.root",
	"DCROLL_ZOOKEEPER_SESSION_TIMEOUT":  "zookeeper.session_timeout",
	"DCROLL_ZOOKEEPER_ACL":              "zookeeper.acl",
	"DCROLL_ZOOKEEPER_USER":             "zookeeper.user",
	"DCROLL_ZOOKEEPER_PASSWORD_FILE":    "zookeeper.password_file",
	"DCROLL_ZOOKEEPER_OPERATOR_ID":      "zookeeper.operator_id",
	"DCROLL_ZOOKEEPER_AGENT_ID":         "zookeeper.agent_id",
	"DCROLL_ZOOKEEPER_TLS_CA":           "zookeeper.tls_ca",
	"DCROLL_ZOOKEEPER_TLS_CERT":         "zookeeper.tls_cert",
	"DCROLL_ZOOKEEPER_TLS_KEY":          "zookeeper.tls_key",
	"DCROLL_ZOOKEEPER_TLS_SERVER_NAME":  "zookeeper.tls_server_name",
	"DCROLL_HOST_NAME":                  "host.name",
	"DCROLL_HOST_RACK":                  "host.rack",
	"DCROLL_HOST_SITE":                  "host.site",
	"DCROLL_HOST_STATE_DIR":             "host.state_dir",
	"DCROLL_HOST_MACHINE_ID_FILE":       "host.machine_id_file",
	"DCROLL_LOG_LEVEL":                  "log.level",
	"DCROLL_LOG_FORMAT":                 "log.format",
	"DCROLL_TRANSFER_BIND":              "transfer.bind",
	"DCROLL_TRANSFER_LISTEN":            "transfer.listen",
	"DCROLL_TRANSFER_PEER_TOKEN_FILE":   "transfer.peer_token_file",
	"DCROLL_TRANSFER_ADVERTISE":         "transfer.advertise",
	"DCROLL_TRANSFER_TORRENT_LISTEN":    "transfer.torrent_listen",
	"DCROLL_TRANSFER_TORRENT_ADVERTISE": "transfer.torrent_advertise",
	"DCROLL_METRICS_LISTEN":             "metrics.listen",
}

// ServiceEnv names the variables the agent sets for the commands it runs;
// they are not config keys.
var ServiceEnv = []string{"DCROLL_SERVICE", "DCROLL_VERSION", "DCROLL_RELEASE_DIR"}

// EnvKeys lists the environment variables Load understands, sorted.
func EnvKeys() []string { return slices.Sorted(maps.Keys(envKeys)) }

// EnvKey is the config key the environment variable name sets, or "".
func EnvKey(name string) string { return envKeys[name] }

func envLayer(environ []string) (map[string]any, error) {
	m := map[string]any{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := envKeys[name]
		if !ok {
			if slices.Contains(ServiceEnv, name) {
				continue
			}
			return nil, fmt.Errorf("%w: environment: unknown variable %s (known: %s)", ErrInvalid, name, strings.Join(EnvKeys(), ", "))
		}
		if key == "zookeeper.servers" {
			m[key] = splitList(value)
			continue
		}
		m[key] = value
	}
	return m, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// SplitServers parses a --zk value, "host:port,host:port".
func SplitServers(s string) []string { return splitList(s) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidName reports whether s can name a host or a service: it becomes a
// znode name and a directory name, so no slashes, no dots alone, no spaces.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidRoot checks a ZooKeeper root path such as /dc.
func ValidRoot(root string) error {
	if !strings.HasPrefix(root, "/") || root == "/" || strings.HasSuffix(root, "/") {
		return fmt.Errorf("root %q must be an absolute ZooKeeper path like /dc, not / and without a trailing slash", root)
	}
	for _, part := range strings.Split(root[1:], "/") {
		if !ValidName(part) {
			return fmt.Errorf("root %q: bad path element %q", root, part)
		}
	}
	return nil
}

// ReadSecret reads the secret in the file at path, which the config key
// names: a password or a token. The file must be a regular file that only
// its owner can read or write (mode 0600 or stricter), and not empty.
func ReadSecret(key, path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", invalid(key, "%q is not an absolute path", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", invalid(key, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", invalid(key, "%v", err)
	}
	if !fi.Mode().IsRegular() {
		return "", invalid(key, "%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", invalid(key, "%s has mode %04o: others may read it; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", invalid(key, "%v", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", invalid(key, "%s is empty", path)
	}
	return secret, nil
}

// resolveCredential looks up the service's user and group: the user's
// primary group unless a group is given.
func (s *Service) resolveCredential(key string) error {
	if s.User == "" && s.Group == "" {
		return nil
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), NoSetGroups: true}
	if s.User != "" {
		u, err := user.Lookup(s.User)
		if err != nil {
			return invalid(key+".user", "%q: %v", s.User, err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return invalid(key+".user", "%q has uid %q, gid %q: not numbers", s.User, u.Uid, u.Gid)
		}
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	}
	if s.Group != "" {
		g, err := user.LookupGroup(s.Group)
		if err != nil {
			return invalid(key+".group", "%q: %v", s.Group, err)
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return invalid(key+".group", "%q has gid %q: not a number", s.Group, g.Gid)
		}
		cred.Gid = uint32(gid)
	}
	s.Credential = cred
	return nil
}

func invalid(key string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...))
}

// complete fills derived defaults and validates every value.
func (c *Config) complete() error {
	z := &c.ZooKeeper
	if len(z.Servers) == 0 {
		return invalid("zookeeper.servers", "empty: name at least one host:port")
	}
	for _, s := range z.Servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || port == "" {
			return invalid("zookeeper.servers", "%q is not host:port", s)
		}
	}
	if err := ValidRoot(z.Root); err != nil {
		return invalid("zookeeper.root", "%v", err)
	}
	if z.SessionTimeout < 100*time.Millisecond || z.SessionTimeout > 10*time.Minute {
		return invalid("zookeeper.session_timeout", "%s is outside 100ms..10m", z.SessionTimeout)
	}
	switch z.ACL {
	case "open":
	case "digest", "digest+read":
		if z.User == "" || z.PasswordFile == "" {
			return invalid("zookeeper.acl", "%q needs zookeeper.user and zookeeper.password_file", z.ACL)
		}
	case "roles":
		for _, kv := range [][2]string{{"zookeeper.operator_id", z.OperatorID}, {"zookeeper.agent_id", z.AgentID}} {
			if _, _, err := ParseACLID(kv[1]); err != nil {
				return invalid(kv[0], "%v (the roles ACL needs both roles' identities)", err)
			}
		}
		if z.OperatorID == z.AgentID {
			return invalid("zookeeper.agent_id", "%q is the operator's identity too: give each role its own credential", z.AgentID)
		}
		if z.User == "" && z.TLSCert == "" {
			return invalid("zookeeper.acl", `"roles" needs this host's credential: zookeeper.user and password_file (digest), or zookeeper.tls_cert and tls_key (x509)`)
		}
	default:
		return invalid("zookeeper.acl", "%q is not one of open, digest, digest+read, roles", z.ACL)
	}
	if z.User != "" && z.PasswordFile == "" {
		return invalid("zookeeper.password_file", "empty, but zookeeper.user is set")
	}
	if z.PasswordFile != "" {
		if _, err := ReadSecret("zookeeper.password_file", z.PasswordFile); err != nil {
			return err
		}
	}
	if _, err := z.ClientTLS(); err != nil {
		return err
	}

	if c.Host.Name == "" {
		name, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("config: host.name is empty and the hostname is unknown: %w", err)
		}
		c.Host.Name = name
	}
	if !ValidName(c.Host.Name) {
		return invalid("host.name", "%q is not a valid name (letters, digits, '.', '_', '-'; at most 63)", c.Host.Name)
	}
	if !filepath.IsAbs(c.Host.StateDir) {
		return invalid("host.state_dir", "%q is not an absolute path", c.Host.StateDir)
	}
	if f := c.Host.MachineIDFile; f != "" && !filepath.IsAbs(f) {
		return invalid("host.machine_id_file", "%q is not an absolute path", f)
	}

	switch strings.ToLower(c.Log.Level) {
	case "trace", "debug", "info", "warn", "error":
	default:
		return invalid("log.level", "%q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return invalid("log.format", "%q is not text or json", c.Log.Format)
	}

	if err := c.Transfer.complete(c.Host.Name); err != nil {
		return err
	}
	if l := c.Metrics.Listen; l != "" {
		h, port, err := net.SplitHostPort(l)
		if err != nil {
			return invalid("metrics.listen", "%q is not host:port (empty turns the metrics off)", l)
		}
		if h == "" && c.Transfer.Bind != "" {
			c.Metrics.Listen = net.JoinHostPort(c.Transfer.Bind, port)
		}
	}
	for i, k := range c.Trust.Keys {
		if _, err := trust.ParsePublicKey(k); err != nil {
			return invalid(fmt.Sprintf("trust.keys[%d]", i), "%v", err)
		}
	}

	for name, s := range c.Services {
		if err := s.complete(name, c.Host.StateDir); err != nil {
			return err
		}
		c.Services[name] = s
	}
	return nil
}

func (t *Transfer) complete(host string) error {
	if t.UploadRate < 0 || t.DownloadRate < 0 {
		return invalid("transfer", "upload_rate and download_rate must be 0 (no cap) or positive bytes per second")
	}
	if t.MaxConns < 1 {
		return invalid("transfer.max_conns", "%d: want at least 1", t.MaxConns)
	}
	if t.OriginRequests < 1 || t.OriginRequests > 64 {
		return invalid("transfer.origin_requests", "%d: want 1 to 64", t.OriginRequests)
	}
	for i, h := range t.OriginRedirectHosts {
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			return invalid(fmt.Sprintf("transfer.origin_redirect_hosts[%d]", i), "%q: want a host name or host:port", h)
		}
	}
	if t.PeerTokenFile != "" {
		if _, err := ReadSecret("transfer.peer_token_file", t.PeerTokenFile); err != nil {
			return err
		}
	}
	if t.Bind != "" {
		if net.ParseIP(t.Bind) == nil {
			return invalid("transfer.bind", "%q is not an IP address (empty: every interface)", t.Bind)
		}
		for _, l := range []*string{&t.Listen, &t.TorrentListen} {
			if h, port, err := net.SplitHostPort(*l); err == nil && h == "" {
				*l = net.JoinHostPort(t.Bind, port)
			}
		}
	}
	var err error
	if t.Advertise, err = advertised("transfer.listen", t.Listen, "transfer.advertise", t.Advertise, host); err != nil {
		return err
	}
	t.TorrentAdvertise, err = advertised("transfer.torrent_listen", t.TorrentListen, "transfer.torrent_advertise", t.TorrentAdvertise, host)
	return err
}

// advertised checks a listen address and returns the address peers use for
// it: the one given, else host and the listen port. An empty listen address
// turns the service off and advertises nothing.
func advertised(listenKey, listen, advertiseKey, advertise, host string) (string, error) {
	if listen == "" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", invalid(listenKey, "%q is not host:port (empty turns it off)", listen)
	}
	if advertise == "" {
		advertise = net.JoinHostPort(host, port)
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return "", invalid(advertiseKey, "%q is not host:port", advertise)
	}
	return advertise, nil
}

func (s *Service) complete(name, stateDir string) error {
	key := "services." + name
	if !ValidName(name) {
		return invalid(key, "%q is not a valid service name", name)
	}
	if s.Releases == "" {
		s.Releases = filepath.Join(stateDir, "releases", name)
	}
	if !filepath.IsAbs(s.Releases) {
		return invalid(key+".releases", "%q is not an absolute path", s.Releases)
	}
	switch {
	case s.Run != "" && (s.Start != "" || s.Stop != ""):
		return invalid(key, "set either run, or start and stop, not both")
	case s.Run == "" && s.Start == "":
		return invalid(key, "set run (a supervised command) or start and stop (commands)")
	case s.Start != "" && s.Stop == "":
		return invalid(key+".stop", "empty, but start is set")
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = 30 * time.Second
	}
	if s.StopTimeout < 0 {
		return invalid(key+".stop_timeout", "%s is negative", s.StopTimeout)
	}
	if err := s.resolveCredential(key); err != nil {
		return err
	}
	h := &s.Health
	n := 0
	for _, v := range []string{h.HTTP, h.TCP, h.Command} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return invalid(key+".health", "set exactly one of http, tcp or command")
	}
	if h.HTTP != "" {
		u, err := url.Parse(h.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(key+".health.http", "%q is not an http(s) URL", h.HTTP)
		}
	}
	if h.TCP != "" {
		if _, _, err := net.SplitHostPort(h.TCP); err != nil {
			return invalid(key+".health.tcp", "%q is not host:port", h.TCP)
		}
	}
	if h.Interval == 0 {
		h.Interval = 2 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = time.Second
	}
	if h.Interval < 0 || h.Timeout < 0 {
		return invalid(key+".health", "interval and timeout must be positive")
	}
	return nil
}
