package modes

import (
	"strings"

	"github.com/spf13/pflag"
)

// ModeDoc is what the tests see of a mode listed in help: its name and the
// documentation it carries.
type ModeDoc struct {
	Name, Synopsis, Usage, Help string
	Flags                       map[string]string // name: usage
}

// VisibleModes lists the modes of the modes table that help lists, in
// name order.
func VisibleModes() []ModeDoc {
	var docs []ModeDoc
	for _, name := range modeNames() {
		if strings.HasPrefix(name, "_") {
			continue
		}
		m := registry[name]()
		fs, usage, help := m.Flags(&Env{})
		docs = append(docs, ModeDoc{Name: name, Synopsis: m.Synopsis(), Usage: usage, Help: help, Flags: flagUsages(fs)})
	}
	return docs
}

// GlobalFlags are the flags every mode takes.
func GlobalFlags() map[string]string {
	fs := pflag.NewFlagSet("dcroll", pflag.ContinueOnError)
	new(Globals).register(fs)
	return flagUsages(fs)
}

func flagUsages(fs *pflag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		_, m[f.Name] = pflag.UnquoteUsage(f)
	})
	return m
}
