package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// runDLQ implements `orderflow dlq list|replay`.
func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, "usage: orderflow dlq list --topic dlq.X-events [--limit N] [--json]\n       orderflow dlq replay --topic dlq.X-events (--event-id ID[,ID...] | --offset P:O [--value-file F] | --all)")
		return ErrUsage
	}
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("topic", "", "dead-letter topic: "+strings.Join(event.DLQTopics(), ", "))
	limit := fs.Int("limit", 100, "list: most records to show (0: all)")
	asJSON := fs.Bool("json", false, "list: print JSON lines")
	ids := fs.String("event-id", "", "replay: comma-separated eventIds to republish")
	offset := fs.String("offset", "", "replay: one record by partition:offset (for records without an eventId)")
	all := fs.Bool("all", false, "replay: republish every record in the topic")
	valueFile := fs.String("value-file", "", "replay with --offset: republish this corrected event (JSON envelope) instead of the record's value")
	if err := fs.Parse(args[1:]); err != nil {
		return ErrUsage
	}
	if *topic == "" {
		fmt.Fprintln(stderr, "--topic is required")
		return ErrUsage
	}
	e := config.New(getenv)
	c := service.LoadCommon(e)
	if err := e.Err(); err != nil {
		return err
	}
	c.Kafka.ClientID = "orderflow-dlq"
	if args[0] == "list" {
		recs, err := kafka.ReadDLQ(ctx, c.Kafka, *topic, *limit)
		if err != nil {
			return err
		}
		return printDLQ(stdout, recs, *asJSON)
	}
	selectors := 0
	for _, set := range []bool{*ids != "", *offset != "", *all} {
		if set {
			selectors++
		}
	}
	if selectors != 1 {
		fmt.Fprintln(stderr, "replay needs exactly one of --event-id, --offset or --all")
		return ErrUsage
	}
	var fixed *event.Envelope
	var fixedValue []byte
	if *valueFile != "" {
		if *offset == "" {
			fmt.Fprintln(stderr, "--value-file needs --offset (it replaces one record)")
			return ErrUsage
		}
		b, err := os.ReadFile(*valueFile)
		if err != nil {
			return err
		}
		e, err := event.Decode(b)
		if err == nil {
			err = event.ValidatePayload(e)
		}
		if err != nil {
			return fmt.Errorf("%s: the corrected event is still invalid: %w", *valueFile, err)
		}
		fixed, fixedValue = &e, bytes.TrimSpace(b)
	}
	recs, err := kafka.ReadDLQ(ctx, c.Kafka, *topic, 0)
	if err != nil {
		return err
	}
	if fixed != nil {
		for i, d := range recs {
			if fmt.Sprintf("%d:%d", d.Partition, d.Offset) == *offset {
				if d.Key != fixed.OrderID {
					return fmt.Errorf("the corrected event is for order %s but the record's key is %q", fixed.OrderID, d.Key)
				}
				recs[i] = d.WithValue(fixedValue, fixed.EventID, string(fixed.EventType))
			}
		}
	}
	wanted := strings.Split(*ids, ",")
	n, err := kafka.Replay(ctx, c.Kafka, recs, func(d kafka.DLQRecord) bool {
		switch {
		case *all:
			return true
		case *offset != "":
			return fmt.Sprintf("%d:%d", d.Partition, d.Offset) == *offset
		default:
			return d.EventID != "" && slices.Contains(wanted, d.EventID)
		}
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no record matched; nothing replayed")
	}
	fmt.Fprintf(stdout, "replayed %d record(s) from %s\n", n, *topic)
	return nil
}

func printDLQ(w io.Writer, recs []kafka.DLQRecord, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION:OFFSET\tKEY\tEVENT TYPE\tEVENT ID\tORIGIN\tRETRIES\tFAILED AT\tERROR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d:%d\t%s\t%s\t%s\t%s/%s@%s\t%s\t%s\t%s\n", r.Partition, r.Offset, r.Key, r.EventType, r.EventID,
			r.Headers[kafka.HeaderOriginalTopic], r.Headers[kafka.HeaderOriginalPartition], r.Headers[kafka.HeaderOriginalOffset],
			r.Headers[kafka.HeaderRetryCount], r.Headers[kafka.HeaderFailedAt], r.Error())
	}
	fmt.Fprintf(tw, "%d record(s)\n", len(recs))
	return tw.Flush()
}
