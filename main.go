// Command dcroll rolls upgrades across a data center's hosts through
// ZooKeeper. It runs as the agent on every host and as the operator's tool
// anywhere; see `dcroll help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcroll/dcroll/modes"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := modes.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
