package modes

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped at build time: -ldflags "-X github.com/dcroll/dcroll/modes.Version=1.2.3 -X ...Commit=abc".
var (
	Version = ""
	Commit  = ""
)

func init() { register("version", func() mode { return &versionMode{} }) }

type versionMode struct{}

func (*versionMode) Synopsis() string { return "print dcroll's version, commit and Go version" }

func (*versionMode) Flags(*Env) (*flag.FlagSet, string, string) {
	return flag.NewFlagSet("version", flag.ContinueOnError), "version", ""
}

func (*versionMode) Run(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	v, c := BuildVersion()
	fmt.Fprintf(env.Stdout, "dcroll %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
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
