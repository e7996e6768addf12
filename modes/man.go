package modes

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
)

// The manual page is written from the modes table, each mode's usage, help
// and flags, the way `dcroll help MODE` shows them: a mode added later is in
// it without anything written for it. It is put together as markdown and
// turned into roff by go-md2man.

func init() { register("man", func() mode { return &manMode{} }) }

type manMode struct{}

func (*manMode) Synopsis() string { return "print the manual page dcroll(1), in roff" }

func (*manMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("man", pflag.ContinueOnError), "man", `
The page documents every mode with its flags, as dcroll help does. The
packages install it as /usr/share/man/man1/dcroll.1.gz; without them, read
it with:

  dcroll man | man -l -`
}

func (*manMode) Run(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	_, err := env.Stdout.Write(manPage())
	return err
}

// manPage is dcroll(1) in roff.
func manPage() []byte {
	version, _ := BuildVersion()
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p(`%% "DCROLL" "1" "" "dcroll %s" "dcroll manual"`, mdText(version))
	p("# NAME")
	p("dcroll - roll upgrades across a data center's hosts through ZooKeeper")
	p("")
	p("# SYNOPSIS")
	p("**dcroll** [**--config** *FILE*] [**--zk** *host:port,...*] [**--root** *root*] *MODE* [*flags*] [*arguments*]")
	p("")
	p("**dcroll --version**")
	p("")
	p("# DESCRIPTION")
	p("%s", mdBlocks(`
dcroll rolls upgrades across a data center's hosts, service after service
in dependency order, never taking more hosts of a service down than its
quorum allows. One binary runs as the agent on every host (dcroll agent,
under systemd as dcroll.service) and as the operator's tool anywhere.
ZooKeeper is the only shared state: one root znode is one data center.

Flags go anywhere: before the mode name (the global ones), after it, or
after the arguments; -- ends them. Long flags take two dashes.
`))
	p("# GLOBAL OPTIONS")
	globals := pflag.NewFlagSet("dcroll", pflag.ContinueOnError)
	new(Globals).register(globals)
	globals.Bool("version", false, "print dcroll's version and exit")
	globals.BoolP("help", "h", false, "print the usage (of the mode, after a mode name) and exit")
	b.WriteString(mdFlags(globals))
	p("# MODES")
	for _, name := range modeNames() {
		if strings.HasPrefix(name, "_") {
			continue
		}
		m := registry[name]()
		fs, usage, help := m.Flags(&Env{})
		p("### dcroll %s", mdText(usage))
		p("%s", mdText(upperFirst(m.Synopsis())+"."))
		p("")
		p("%s", mdBlocks(help))
		if fs.HasFlags() {
			b.WriteString(mdFlags(fs))
		}
	}
	p("### dcroll help [MODE]")
	p("%s", mdText(upperFirst(helpSynopsis)+"; dcroll MODE --help does the same."))
	p("")
	p("# EXIT STATUS")
	p("%s", mdBlocks(`
0 on success; 1 when the mode failed (the error is printed, naming the
problem); 2 for a command line dcroll cannot read: an unknown mode or flag,
or a missing or extra argument (the usage is printed).
`))
	p("# ENVIRONMENT")
	p("%s", mdBlocks(`
Each variable sets one key of the host config, over the config file and
under the flags. Any other DCROLL_ variable is an error, except those the
agent sets for the commands it runs (`+strings.Join(config.ServiceEnv, ", ")+`).
`))
	for _, name := range config.EnvKeys() {
		p("**%s**\n: sets %s\n", mdText(name), mdText(config.EnvKey(name)))
	}
	p("# FILES")
	for _, f := range []struct{ path, what string }{
		{config.DefaultPath, "the host config (TOML): the ensemble, the host's name and its services"},
		{"/etc/default/dcroll", "DCROLL_ variables for the agent's systemd unit"},
		{"/var/lib/dcroll/state.json", "the agent's local cache: per service, the version running here and the versions the fleet runs"},
		{"/var/lib/dcroll/releases/", "unpacked releases, per service, and the current symlink of each"},
	} {
		p("*%s*\n: %s\n", mdText(f.path), mdText(f.what))
	}
	p("# SEE ALSO")
	p("%s", mdBlocks(`
systemctl(1), journalctl(1). The operator guide, the host config reference
and the ZooKeeper tree: README.md and docs/PROTOCOL.md at
https://github.com/dcroll/dcroll.
`))
	return tidy(md2man.Render(b.Bytes()))
}

// tidy turns off hyphenation and justification after the title, which
// sets them, so that paths, flags and znodes stay whole and greppable (HY
// is the hyphenation the man macros restore after an example, .EE), and
// drops the blank lines go-md2man leaves between paragraphs, which roff
// would print as extra space. Blank lines within an example stay; an
// example is indented, after a paragraph's space.
func tidy(roff []byte) []byte {
	var out bytes.Buffer
	example := false
	for _, line := range strings.SplitAfter(string(roff), "\n") {
		switch {
		case strings.HasPrefix(line, ".EX"):
			example = true
			out.WriteString(".PP\n.RS 4\n")
		case strings.HasPrefix(line, ".EE"):
			example = false
			line += ".RE\n"
		case strings.TrimSpace(line) == "" && !example:
			continue
		}
		out.WriteString(line)
		if strings.HasPrefix(line, ".TH ") {
			out.WriteString(".nr HY 0\n.nh\n.ad l\n")
		}
	}
	return out.Bytes()
}

// mdFlags is a definition list of the flags of fs: each flag with the name
// of its value, its usage and its default, as pflag prints them.
func mdFlags(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		value, usage := pflag.UnquoteUsage(f)
		term := "**--" + mdText(f.Name) + "**"
		if f.Shorthand != "" {
			term = "**-" + mdText(f.Shorthand) + "**, " + term
		}
		if f.NoOptDefVal == "" && value != "" {
			term += " *" + mdText(value) + "*"
		}
		fmt.Fprintf(&b, "%s\n: %s%s\n\n", term, mdText(usage), mdText(flagDefault(f)))
	})
	return b.String()
}

// flagDefault is what pflag appends to a flag's usage to show its default
// ("" when the default is the zero value), taken from pflag itself.
func flagDefault(f *pflag.Flag) string {
	one := pflag.NewFlagSet("", pflag.ContinueOnError)
	one.AddFlag(f)
	_, usage := pflag.UnquoteUsage(f)
	line := strings.TrimRight(one.FlagUsagesWrapped(0), "\n")
	if i := strings.LastIndex(line, usage); i >= 0 {
		return line[i+len(usage):]
	}
	return ""
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

var (
	// mdInline are the characters markdown reads as markup anywhere in a
	// line.
	mdInline = regexp.MustCompile("[\\\\`*_\\[\\]<>&|]")
	// mdLineStart is markup at the start of a line: a heading, a list item,
	// a quote, a definition, a rule. (A line of = alone, which would make
	// the line above it a heading, cannot be escaped; help has none.)
	mdLineStart = regexp.MustCompile(`^([#+\-:>]|[0-9]+[.)])`)
)

// mdText is s as literal markdown text, except `code spans`, which stay
// code spans (shown in bold). Characters that are markup only at the
// start of a line are escaped only there, so that roff gets plain text.
func mdText(s string) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		parts := strings.Split(line, "`")
		if len(parts)%2 == 0 { // an unpaired back quote: all literal
			parts = []string{strings.Join(parts, "`")}
		}
		for j := 0; j < len(parts); j += 2 {
			parts[j] = mdInline.ReplaceAllString(parts[j], `\$0`)
		}
		line = strings.Join(parts, "`")
		if m := mdLineStart.FindStringIndex(line); m != nil {
			line = line[:m[1]-1] + `\` + line[m[1]-1:]
		}
		lines[i] = line
	}
	return strings.Join(lines, "\n")
}

// mdBlocks is the help text of a mode as markdown: its paragraphs as
// text, its indented lines (examples) as code blocks.
func mdBlocks(help string) string {
	var b strings.Builder
	lines := strings.Split(strings.Trim(help, "\n"), "\n")
	indented := func(l string) bool { return strings.HasPrefix(l, "  ") }
	for i := 0; i < len(lines); {
		switch {
		case strings.TrimSpace(lines[i]) == "":
			i++
		case indented(lines[i]):
			// The example runs to the last indented line before a
			// paragraph, blank lines within it included.
			end := i
			for j := i; j < len(lines) && (indented(lines[j]) || strings.TrimSpace(lines[j]) == ""); j++ {
				if indented(lines[j]) {
					end = j + 1
				}
			}
			b.WriteString("```\n")
			for _, l := range lines[i:end] {
				b.WriteString(strings.TrimPrefix(l, "  ") + "\n")
			}
			b.WriteString("```\n\n")
			i = end
		default:
			for ; i < len(lines) && strings.TrimSpace(lines[i]) != "" && !indented(lines[i]); i++ {
				b.WriteString(mdText(lines[i]) + "\n")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
