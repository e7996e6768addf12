package modes

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// Stamped at build time: -ldflags "-X github.com/dcroll/dcroll/modes.Version=1.2.3 -X ...Commit=abc".
var (
	Version = ""
	Commit  = ""
)

func init() { register("version", func() mode { return &versionMode{} }) }

type versionMode struct{}

func (*versionMode) Synopsis() string { return "print dcroll's version, commit and Go version" }

func (*versionMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("version", pflag.ContinueOnError), "version", ""
}

func (*versionMode) Run(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	printVersion(env.Stdout)
	return nil
}

// printVersion prints the line of `dcroll version` and `dcroll --version`.
func printVersion(w io.Writer) {
	v, c := BuildVersion()
	fmt.Fprintf(w, "dcroll %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// BuildVersion returns the stamped version and commit, falling back to what
// the Go toolchain recorded in the binary.
func BuildVersion() (version, commit string) {
	version, commit = Version, Commit
	if info, ok := debug.ReadBuildInfo(); ok {
		if version == "" && info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && commit == "" {
				commit = s.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if commit == "" {
		commit = "unknown"
	}
	return version, commit
}
