// Package modes is dcroll's command line: one file per mode, each a small
// type with its own flags, usage and Run. Modes wire the other packages
// together and print; the protocol lives in roll.
package modes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/roll"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// errUsage marks an error in the command line: exit 2 and the usage.
var errUsage = errors.New("usage")

// Env is what a mode may touch of the outside world, so tests can run modes
// in-process.
type Env struct {
	Stdout, Stderr io.Writer
	Environ        []string
	Globals
}

// Globals are the flags every mode accepts, before or after its name.
type Globals struct {
	Config string
	ZK     string
	Root   string
}

func (g *Globals) register(fs *pflag.FlagSet) {
	// The current values are the defaults, so flags given before the mode
	// name survive the mode's own parse.
	fs.StringVar(&g.Config, "config", g.Config, "config `FILE` (default "+config.DefaultPath+")")
	fs.StringVar(&g.ZK, "zk", g.ZK, "ZooKeeper servers, `host:port,...` (overrides zookeeper.servers)")
	fs.StringVar(&g.Root, "root", g.Root, "data center `root` znode, like /dc (overrides zookeeper.root)")
}

// mode is one dcroll subcommand.
type mode interface {
	// Synopsis is a one-line description for `dcroll help`.
	Synopsis() string
	// Flags returns the mode's flag set, its usage line and longer help.
	// Flags are parsed wherever they stand among the arguments.
	Flags(env *Env) (fs *pflag.FlagSet, usage, help string)
	// Run runs the mode with the arguments left after the flags.
	Run(ctx context.Context, env *Env, args []string) error
}

var registry = map[string]func() mode{}

func register(name string, f func() mode) { registry[name] = f }

func modeNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Main runs dcroll with args (without the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	env := &Env{Stdout: stdout, Stderr: stderr, Environ: environ}
	if isCompletionRequest(args) {
		return complete(env, args)
	}
	// The global flags before the mode name: parsing stops at the name, and
	// the mode's own parse takes the rest, global flags included.
	top := pflag.NewFlagSet("dcroll", pflag.ContinueOnError)
	top.SetInterspersed(false)
	top.SetOutput(stderr)
	env.Globals.register(top)
	version := top.Bool("version", false, "print dcroll's version and exit")
	top.Usage = func() { printUsage(stderr) }
	if err := top.Parse(args); err != nil {
		return parseFailed(stderr, "dcroll", top, err, top.Usage)
	}
	if *version {
		printVersion(stdout)
		return ExitOK
	}
	args = top.Args()
	if len(args) == 0 {
		printUsage(stderr)
		return ExitUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		return help(env, args)
	}
	newMode, ok := registry[name]
	if !ok {
		fmt.Fprintf(stderr, "dcroll: unknown mode %q%s\n", name, didYouMean(name))
		printUsage(stderr)
		return ExitUsage
	}
	m := newMode()
	fs, usage, _ := m.Flags(env)
	fs.SetOutput(stderr)
	env.Globals.register(fs)
	fs.Usage = func() { printModeUsage(stderr, m, fs, usage, "") }
	if err := fs.Parse(args); err != nil {
		return parseFailed(stderr, "dcroll "+name, fs, err, fs.Usage)
	}
	err := m.Run(ctx, env, fs.Args())
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "dcroll %s: %v\n", name, strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintf(stderr, "usage: dcroll %s\n", usage)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "dcroll %s: %v\n", name, err)
		return ExitError
	}
}

// parseFailed reports a command line fs refused and returns the exit code:
// 0 for -h and --help (pflag has printed the usage then), 2 otherwise.
func parseFailed(stderr io.Writer, prog string, fs *pflag.FlagSet, err error, usage func()) int {
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v%s\n", prog, err, singleDashHint(fs, err))
	usage()
	return ExitUsage
}

// singleDashHint points at the long flag an operator used to Go's flag
// package meant by "-json": pflag reads that as the shorthands j, s, o, n.
func singleDashHint(fs *pflag.FlagSet, err error) string {
	var nx *pflag.NotExistError
	if !errors.As(err, &nx) || nx.GetSpecifiedShortnames() == "" {
		return ""
	}
	name, _, _ := strings.Cut(nx.GetSpecifiedShortnames(), "=")
	if fs.Lookup(name) == nil {
		return ""
	}
	return fmt.Sprintf(" (long flags take two dashes: --%s)", name)
}

// didYouMean suggests the mode a misspelt name most likely meant: one it
// begins, else the nearest within two edits.
func didYouMean(name string) string {
	best, bestDist := "", 3
	for _, n := range modeNames() {
		if strings.HasPrefix(n, "_") {
			continue
		}
		d := levenshtein.ComputeDistance(name, n)
		if len(name) >= 3 && strings.HasPrefix(n, name) {
			d = 0
		}
		if d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: dcroll [--config FILE] [--zk host:port,...] [--root /dc] MODE [flags] [args]\n")
	fmt.Fprintf(w, "       dcroll --version\n\nFlags may come before or after the arguments; `--` ends them.\n\nModes:\n")
	for _, n := range modeNames() {
		if strings.HasPrefix(n, "_") {
			continue
		}
		fmt.Fprintf(w, "  %-8s %s\n", n, registry[n]().Synopsis())
	}
	fmt.Fprintf(w, "  %-8s %s\n", "help", helpSynopsis)
}

const helpSynopsis = "explain a mode: dcroll help MODE"

func printModeUsage(w io.Writer, m mode, fs *pflag.FlagSet, usage, help string) {
	fmt.Fprintf(w, "usage: dcroll %s\n\n%s\n", usage, m.Synopsis())
	if help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(help))
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func help(env *Env, args []string) int {
	if len(args) == 0 {
		printUsage(env.Stdout)
		return ExitOK
	}
	newMode, ok := registry[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "dcroll help: unknown mode %q%s\n", args[0], didYouMean(args[0]))
		printUsage(env.Stderr)
		return ExitUsage
	}
	m := newMode()
	fs, usage, long := m.Flags(env)
	// Fresh globals: the defaults shown are the real ones, not flags given
	// before `help`.
	new(Globals).register(fs)
	printModeUsage(env.Stdout, m, fs, usage, long)
	return ExitOK
}

// loadConfig builds the config from the layers: the named or default file,
// the environment and the global flags.
func (env *Env) loadConfig() (*config.Config, error) {
	src := config.Sources{File: env.Config, Env: env.Environ, Flags: map[string]any{}}
	if src.File == "" {
		src.File, src.FileOptional = config.DefaultPath, true
	}
	if env.ZK != "" {
		src.Flags["zookeeper.servers"] = config.SplitServers(env.ZK)
	}
	if env.Root != "" {
		src.Flags["zookeeper.root"] = env.Root
	}
	return config.Load(src)
}

func (env *Env) logger(cfg *config.Config) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "dcroll",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     env.Stderr,
	})
}

// connect loads the config and dials ZooKeeper for a one-shot operator
// command, waiting for the session up to the session timeout so that an
// unreachable ensemble gives a clear error instead of a hang.
func (env *Env) connect(ctx context.Context) (*roll.Store, *config.Config, error) {
	cfg, err := env.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	store, err := roll.Open(ctx, cfg.ZooKeeper, env.logger(cfg), cfg.ZooKeeper.SessionTimeout)
	if err != nil {
		return nil, nil, err
	}
	return store, cfg, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
