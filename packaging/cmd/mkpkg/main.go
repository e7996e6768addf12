// Command mkpkg builds dcroll's .deb and .rpm from a built binary and
// prints their paths:
//
//	go run ./packaging/cmd/mkpkg --version v1.2.3 --binary ./dcroll --out dist/
//
// What the packages hold is defined in package packaging, not here.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dcroll/dcroll/packaging"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "dcroll `version`: a tag (v1.2.3) or git describe output; required")
	binary := fs.String("binary", "dcroll", "the static linux/amd64 dcroll `file` to package")
	out := fs.String("out", "dist", "`directory` to write the packages to; created if missing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mkpkg --version V [--binary FILE] [--out DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage // the flag package has printed the error and usage
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "mkpkg: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	case *version == "":
		fmt.Fprintln(stderr, "mkpkg: --version is required")
		fs.Usage()
		return errUsage
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	paths, err := packaging.Build(*version, *binary, *out)
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}
