package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
)

// DLQRecord is one dead-lettered record as the DLQ tools show it.
type DLQRecord struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       string            `json:"key"`
	EventID   string            `json:"eventId,omitempty"`
	EventType string            `json:"eventType,omitempty"`
	Headers   map[string]string `json:"headers"`
	Value     string            `json:"value"`
	record    *kgo.Record
}

// Error returns the x-error header.
func (d DLQRecord) Error() string { return d.Headers[HeaderError] }

// ReadDLQ reads up to limit records (0: all) of a dead-letter topic, from the start to the end
// offsets at the time of the call. It never waits for new records.
func ReadDLQ(ctx context.Context, c Config, topic string, limit int) ([]DLQRecord, error) {
	var out []DLQRecord
	err := ScanDLQ(ctx, c, topic, func(d DLQRecord) bool {
		out = append(out, d)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// ScanDLQ hands every record of a dead-letter topic, as far as it reached when the scan began, to
// fn, one at a time and in offset order per partition, until fn returns false. Nothing is kept:
// it counts or filters a topic of any size in constant memory.
func ScanDLQ(ctx context.Context, c Config, topic string, fn func(DLQRecord) bool) error {
	if !event.IsDLQ(topic) && !strings.HasPrefix(topic, "dlq") {
		return fmt.Errorf("%q is not a dead-letter topic", topic)
	}
	admCl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if err := errors.Join(starts.Error(), ends.Error()); err != nil {
		return fmt.Errorf("offsets of %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
			remaining[o.Partition] = o.Offset
		}
	})
	if len(from) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(c.Options(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	more := true
	for len(remaining) > 0 && more {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		f.EachError(func(_ string, _ int32, e error) { err = e })
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		f.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end || !more {
				return
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			more = fn(toDLQRecord(r))
		})
	}
	return nil
}

func toDLQRecord(r *kgo.Record) DLQRecord {
	d := DLQRecord{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value),
		Headers: map[string]string{}, record: r}
	for _, h := range r.Headers {
		d.Headers[h.Key] = string(h.Value)
	}
	d.EventID, d.EventType = d.Headers["eventId"], d.Headers["eventType"]
	if d.EventID == "" {
		var e struct {
			EventID   string `json:"eventId"`
			EventType string `json:"eventType"`
		}
		if json.Unmarshal(r.Value, &e) == nil {
			d.EventID, d.EventType = e.EventID, e.EventType
		}
	}
	return d
}

// WithValue returns a copy of d whose value is replaced by a corrected one (an operator's fix of a
// record that can never succeed as it is); the eventId and eventType headers follow the new value.
func (d DLQRecord) WithValue(v []byte, eventID, eventType string) DLQRecord {
	r := *d.record
	r.Value = v
	r.Headers = nil
	for _, h := range d.record.Headers {
		switch h.Key {
		case "eventId":
			h.Value = []byte(eventID)
		case "eventType":
			h.Value = []byte(eventType)
		}
		r.Headers = append(r.Headers, h)
	}
	d.record, d.Value, d.EventID, d.EventType = &r, string(v), eventID, eventType
	return d
}

// Replay republishes dead-lettered records to their x-original-topic with their original key,
// value and headers (the x-* headers removed). Safe because every consumer is idempotent.
// match selects records; it returns how many were republished.
func Replay(ctx context.Context, c Config, recs []DLQRecord, match func(DLQRecord) bool) (int, error) {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for _, d := range recs {
		if !match(d) {
			continue
		}
		orig := d.Headers[HeaderOriginalTopic]
		if orig == "" {
			return 0, fmt.Errorf("record at %d/%d has no %s header", d.Partition, d.Offset, HeaderOriginalTopic)
		}
		rec := &kgo.Record{Topic: orig, Key: d.record.Key, Value: d.record.Value}
		for _, h := range d.record.Headers {
			if !strings.HasPrefix(h.Key, "x-") {
				rec.Headers = append(rec.Headers, h)
			}
		}
		out = append(out, rec)
	}
	if len(out) == 0 {
		return 0, nil
	}
	if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	return len(out), nil
}

// DLQCounts returns the number of records currently retained in each topic (end − start offsets).
func DLQCounts(ctx context.Context, c Config, topics ...string) (map[string]int64, error) {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		s, _ := starts.Lookup(o.Topic, o.Partition)
		out[o.Topic] += o.Offset - s.Offset
	})
	return out, errors.Join(starts.Error(), ends.Error())
}
