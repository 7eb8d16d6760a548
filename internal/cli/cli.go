// Package cli maps orderflow's subcommands to the services' and tools' Run functions.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/delivery"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/inventory"
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/order"
	"github.com/orderflow/orderflow/internal/payment"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/service"
	"github.com/orderflow/orderflow/internal/query"
	"github.com/orderflow/orderflow/internal/verify"
	"github.com/orderflow/orderflow/internal/version"
)

// ErrUsage reports a command line that names no known command; usage has been printed.
var ErrUsage = errors.New("usage")

// RunFunc is the shape of every service's and tool's entry point.
type RunFunc func(ctx context.Context, getenv func(string) string, stdout io.Writer) error

// Services maps each service subcommand to its Run, in saga order for "all".
var Services = map[string]RunFunc{
	order.Name:     order.Run,
	inventory.Name: inventory.Run,
	payment.Name:   payment.Run,
	delivery.Name:  delivery.Run,
	query.Name:     query.Run,
}

// Run executes the subcommand in args.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return ErrUsage
	}
	cmd, rest := args[0], args[1:]
	if run, ok := Services[cmd]; ok {
		switch {
		case len(rest) == 0:
			return run(ctx, getenv, stdout)
		case len(rest) == 1 && rest[0] == "config":
			return printConfig(cmd, getenv, stdout)
		}
		fmt.Fprintf(stderr, "usage: orderflow %s [config]\n", cmd)
		return ErrUsage
	}
	switch cmd {
	case "all":
		return runAll(ctx, getenv, stdout)
	case "topics":
		if len(rest) != 1 || rest[0] != "create" {
			fmt.Fprintln(stderr, "usage: orderflow topics create")
			return ErrUsage
		}
		return createTopics(ctx, getenv, stdout)
	case "dev":
		return runDev(ctx, getenv, stdout)
	case "init":
		return initStores(ctx, getenv, stdout)
	case "probe":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "usage: orderflow probe http://HOST:PORT/readyz")
			return ErrUsage
		}
		return probe(ctx, rest[0], stdout)
	case "config":
		if len(rest) != 1 || rest[0] != "docs" {
			fmt.Fprintln(stderr, "usage: orderflow config docs")
			return ErrUsage
		}
		writeConfigDocs(stdout)
		return nil
	case "loadgen":
		cfg, err := loadgen.ParseFlags(rest, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return ErrUsage
		}
		_, err = loadgen.Run(ctx, cfg, stdout)
		return err
	case "verify":
		return verify.Run(ctx, rest, getenv, stdout, stderr)
	case "query":
		if len(rest) < 1 || rest[0] != "rebuild" {
			fmt.Fprintln(stderr, "usage: orderflow query rebuild [--replay-only] [--force]")
			return ErrUsage
		}
		fs := flag.NewFlagSet("query rebuild", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var opts query.RebuildOptions
		fs.BoolVar(&opts.ReplayOnly, "replay-only", false, "build from the topics alone, without copying the serving generation (orders older than the topics' retention are left out)")
		fs.BoolVar(&opts.Force, "force", false, "start over when an earlier rebuild left its generation unfinished (only when it is no longer running)")
		if err := fs.Parse(rest[1:]); err != nil || fs.NArg() > 0 {
			return ErrUsage
		}
		return query.Rebuild(ctx, getenv, stdout, opts)
	case "dlq":
		return runDLQ(ctx, rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "orderflow %s (commit %s, built %s)\n", version.Version, version.Commit, version.BuildTime)
		return nil
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	fmt.Fprintf(stderr, "orderflow: unknown command %q\n", cmd)
	usage(stderr)
	return ErrUsage
}

// runAll runs every service in one process with the same code paths; the first failure stops all.
func runAll(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	g, gctx := errgroup.WithContext(ctx)
	for name, run := range Services {
		g.Go(func() error {
			if err := run(gctx, getenv, stdout); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func createTopics(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	e := config.New(getenv)
	c := service.LoadCommon(e)
	if err := e.Err(); err != nil {
		return err
	}
	log := obs.NewLogger(stdout, "orderflow-topics", c.LogLevel, c.LogFormat)
	if err := kafka.EnsureTopics(ctx, c.Kafka, log, event.AllTopics()...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "topics ready: %s\n", strings.Join(event.AllTopics(), ", "))
	return nil
}

func usage(w io.Writer) {
	names := make([]string, 0, len(Services))
	for n := range Services {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, `usage: orderflow <command>

services (configured by environment variables, see docs/configuration.md;
<service> config prints its effective configuration, secrets masked):
  %s
  all                 every service in one process
  dev                 everything in one process with embedded Kafka, Postgres and Redis (no servers to install)

tools:
  init                create every service's Postgres database and every Kafka topic (idempotent)
  topics create       create every Kafka topic (idempotent)
  probe URL           GET URL, exit 0 on 2xx (container health checks; the image has no curl)
  config docs         print the configuration reference (docs/configuration.md)
  loadgen [flags]     open-loop load with latency percentiles (orderflow loadgen -h)
  verify [flags]      check every invariant across all stores; exits 1 on a violation
  query rebuild [--replay-only] [--force]
                      build the next generation of the Cassandra read model (a copy of the
                      serving one, then every retained event) while the current one serves,
                      then switch reads to it
  dlq list --topic T  show dead-lettered records with their x-* headers
  dlq replay --topic T (--event-id ID | --offset P:O [--value-file F] | --all)
                      republish dead-lettered records to their original topic
  version             print build information
`, strings.Join(names, "\n  "))
}
