package modes

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion. dcroll parses its command line with pflag alone; cobra
// is used here only for what it does well and keeps up to date: the bash
// and zsh completion scripts, and the hidden `__complete` request those
// scripts send to dcroll at every Tab. Both are driven by a cobra command
// tree built from the modes table (completionTree), so a new mode and its
// flags complete without anything written for them.

func init() { register("completion", func() mode { return &completionMode{} }) }

// completionShells are the shells `dcroll completion` writes a script for.
var completionShells = []string{"bash", "zsh"}

type completionMode struct{}

func (*completionMode) Synopsis() string {
	return "print the bash or zsh completion script"
}

func (*completionMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("completion", pflag.ContinueOnError), "completion bash|zsh", `
The packages install both scripts where the shells look for them:
/usr/share/bash-completion/completions/dcroll (bash-completion loads it at
the first Tab) and _dcroll in zsh's vendor completions. Without the
package, load the script into the running shell:

  source <(dcroll completion bash)
  source <(dcroll completion zsh)    # after compinit

The scripts ask dcroll itself what to complete (modes, their flags, files
where a mode takes one), so they never go out of date with the binary.`
}

func (*completionMode) completeArgs(args []string) ([]string, bool) {
	if len(args) == 0 {
		return completionShells, false
	}
	return nil, false
}

func (m *completionMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want one shell, %s", strings.Join(completionShells, " or "))
	}
	root := completionTree(env.Stdout, env.Stderr)
	switch args[0] {
	case "bash":
		return root.GenBashCompletionV2(env.Stdout, true)
	case "zsh":
		return root.GenZshCompletion(env.Stdout)
	default:
		return usageErr("unknown shell %q: want %s", args[0], strings.Join(completionShells, " or "))
	}
}

// argsCompleter is a mode that says what its positional arguments complete
// to: given the arguments before the one being typed, the candidates, and
// whether file names complete too. A mode without it completes neither.
type argsCompleter interface {
	completeArgs(args []string) (candidates []string, files bool)
}

// isCompletionRequest reports whether args are a completion script's
// request (`dcroll __complete ARGS... PARTIAL`).
func isCompletionRequest(args []string) bool {
	return len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd)
}

// complete answers a completion script's request in cobra's protocol: the
// candidates, one a line (tab, then a description), then ":directive".
func complete(env *Env, args []string) int {
	root := completionTree(env.Stdout, env.Stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(env.Stderr, "dcroll: completion: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// completionTree is the command line as cobra sees it, for completion
// only: one command per visible mode with the mode's flags and synopsis,
// the global flags on the root. Nothing runs through it but completion.
func completionTree(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "dcroll",
		Short: "roll upgrades across a data center's hosts through ZooKeeper",
		// Completion is all this tree does: no `dcroll completion` of
		// cobra's own (the mode of that name is dcroll's), no usage or
		// error printed by cobra.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		SilenceUsage:      true,
		SilenceErrors:     true,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	globals := pflag.NewFlagSet("dcroll", pflag.ContinueOnError)
	new(Globals).register(globals)
	addFlags(root, root.PersistentFlags(), globals)
	version := pflag.NewFlagSet("dcroll", pflag.ContinueOnError)
	version.Bool("version", false, "print dcroll's version and exit")
	addFlags(root, root.Flags(), version)
	var modes []cobra.Completion
	for _, name := range modeNames() {
		if strings.HasPrefix(name, "_") {
			continue
		}
		m := registry[name]()
		fs, _, _ := m.Flags(&Env{})
		cmd := &cobra.Command{
			Use:   name,
			Short: m.Synopsis(),
			// Never called: a command needs a Run for cobra to offer it.
			RunE: func(*cobra.Command, []string) error { return nil },
		}
		addFlags(cmd, cmd.Flags(), fs)
		cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			ac, ok := m.(argsCompleter)
			if !ok {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			candidates, files := ac.completeArgs(args)
			if files {
				return candidates, cobra.ShellCompDirectiveDefault
			}
			return candidates, cobra.ShellCompDirectiveNoFileComp
		}
		root.AddCommand(cmd)
		modes = append(modes, cobra.CompletionWithDesc(name, m.Synopsis()))
	}
	root.SetHelpCommand(&cobra.Command{
		Use:   "help",
		Short: helpSynopsis,
		RunE:  func(*cobra.Command, []string) error { return nil },
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return modes, cobra.ShellCompDirectiveNoFileComp
		},
	})
	return root
}

// addFlags adds the flags of fs to the flag set to of cmd. A flag's value
// completes to file names only when its usage names it FILE; the back
// quotes that name it (pflag.UnquoteUsage) leave the usage, which
// completion shows as the flag's description.
func addFlags(cmd *cobra.Command, to, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		value, _ := pflag.UnquoteUsage(f)
		f.Usage = strings.ReplaceAll(f.Usage, "`", "")
		to.AddFlag(f)
		if f.NoOptDefVal == "" && value != "FILE" {
			// Cannot fail: the flag was just added, once.
			_ = cmd.RegisterFlagCompletionFunc(f.Name, cobra.NoFileCompletions)
		}
	})
}
