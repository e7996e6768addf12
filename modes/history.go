package modes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/roll"
)

func init() { register("history", func() mode { return &historyMode{} }) }

type historyMode struct {
	json  bool
	limit int
}

func (*historyMode) Synopsis() string {
	return "show who deployed what and when: operator actions and deploy events, newest first"
}

func (m *historyMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("history", pflag.ContinueOnError)
	fs.BoolVar(&m.json, "json", false, "print JSON: one array of events (fields are only ever added)")
	fs.IntVar(&m.limit, "limit", 50, "show at most `N` events (0: every one kept)")
	return fs, "history [SERVICE] [--json] [--limit N]", fmt.Sprintf(`
Every operator command (seed, stage, order, pause, resume, abort, rollback,
promote) and every deploy event (a step started or finished, a halt, a
rollback) is kept in ZooKeeper with who wrote it (user@host), when, and its
outcome. The data center keeps the last %d events. With SERVICE, only the
events about it.`, roll.HistoryKeep)
}

func (m *historyMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 1 {
		return usageErr("want at most one SERVICE, got %d arguments", len(args))
	}
	if m.limit < 0 {
		return usageErr("--limit must not be negative")
	}
	svc := ""
	if len(args) == 1 {
		if svc = args[0]; !config.ValidName(svc) {
			return usageErr("service %q is not a valid service name", svc)
		}
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if svc != "" {
		services, err := store.Services()
		if err != nil {
			return err
		}
		if _, ok := services[svc]; !ok {
			return fmt.Errorf("service %q is not in the catalog (%s)", svc, strings.Join(roll.Catalog(services).Names(), ", "))
		}
	}
	events, err := store.History(svc, m.limit)
	if err != nil {
		return err
	}
	if m.json {
		if events == nil {
			events = []roll.HistoryEvent{}
		}
		return printJSON(env.Stdout, events)
	}
	printHistory(env.Stdout, events)
	return nil
}

// printHistory prints events as a table, in the order given.
func printHistory(w io.Writer, events []roll.HistoryEvent) {
	if len(events) == 0 {
		fmt.Fprintln(w, "no history yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tWHEN (UTC)\tWHO\tACTION\tSERVICES\tVERSION\tOUTCOME\tDETAIL")
	for _, e := range events {
		detail := e.Detail
		if e.Took > 0 {
			detail = strings.TrimSpace(fmt.Sprintf("%s, took %s", detail, time.Duration(e.Took)))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.UTC().Format("2006-01-02 15:04:05"), e.By,
			e.Action, dash(strings.Join(e.Services, ",")), dash(e.Version), e.Outcome, detail)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recordAction writes an operator's action to the history, with err as its
// outcome, and returns err. An action refused before it wrote anything is
// not recorded: bad input changes nothing. A history that cannot be written
// is noted, not made the command's failure: the action itself is done.
func recordAction(env *Env, store *roll.Store, e roll.HistoryEvent, err error) error {
	if refused(err) {
		return err
	}
	if err != nil {
		e.Outcome = "failed: " + err.Error()
	}
	if rerr := store.Record(e); rerr != nil {
		fmt.Fprintf(env.Stderr, "dcroll: note: the history does not record this: %v\n", rerr)
	}
	return err
}

// refused reports whether err refused an action before anything was written.
func refused(err error) bool {
	for _, sentinel := range []error{roll.ErrBadOrder, roll.ErrNothingToOrder, roll.ErrNothingStaged, roll.ErrAllQueued,
		roll.ErrBadCatalog, roll.ErrStagingInProgress, roll.ErrNotSeeded, roll.ErrBadRollback, roll.ErrNoPrevious} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}
