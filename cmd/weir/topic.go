package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
)

// runTopic handles `weir topic create|list|describe|delete`.
func runTopic(args []string, env cli) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: topic needs a subcommand: create, list, describe or delete", errUsage)
	}
	sub := args[0]
	if isHelp(sub) {
		return topicHelp(env)
	}
	tf, err := newTopicFlags(sub, env)
	if err != nil {
		return err
	}
	server, partitions, replicas, wantArgs := tf.server, tf.partitions, tf.replicas, tf.wantArgs
	pos, err := parseFlags(tf.fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return fmt.Errorf("%w: topic list takes no arguments, got %q", errUsage, strings.Join(pos, " "))
		}
		return fmt.Errorf("%w: topic %s takes one topic name", errUsage, sub)
	}
	if partitions != nil && (*partitions < 1 || *partitions > actors.MaxPartitions) {
		return fmt.Errorf("%w: --partitions %d: want 1 to %d", errUsage, *partitions, actors.MaxPartitions)
	}
	if replicas != nil && (*replicas < 1 || *replicas > actors.MaxReplicas) {
		return fmt.Errorf("%w: --replicas %d: want 1 to %d", errUsage, *replicas, actors.MaxReplicas)
	}
	var tcfg wire.TopicConfig
	if sub == "create" {
		if tcfg, err = tf.topicConfig(); err != nil {
			return err
		}
	}
	c, err := connect(*server)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch sub {
	case "create":
		if err := c.CreateTopicWithConfig(ctx, pos[0], int32(*partitions), int32(*replicas), tcfg); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "created topic %s: %d partitions, replication factor %d, %s\n", pos[0], *partitions, *replicas, retentionString(tcfg))
	case "delete":
		if err := c.DeleteTopic(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "deleted topic %s\n", pos[0])
	case "list":
		return listTopics(ctx, c, env)
	case "describe":
		return describeTopic(ctx, c, pos[0], env)
	}
	return nil
}

// topicFlags are the flags of one `weir topic` subcommand.
type topicFlags struct {
	fs                           *flag.FlagSet
	server                       *string
	partitions, replicas         *int    // create only
	retentionAge, retentionBytes *string // create only
	wantArgs                     int     // positional arguments
}

// topicConfig reads --retention-age and --retention-bytes: empty for the node's setting,
// "unlimited" for none, else a duration or a byte count.
func (tf *topicFlags) topicConfig() (wire.TopicConfig, error) {
	var c wire.TopicConfig
	switch a := *tf.retentionAge; a {
	case "":
	case "unlimited":
		c.RetentionMs = wire.RetentionUnlimited
	default:
		d, err := time.ParseDuration(a)
		if err != nil || d < time.Millisecond {
			return c, fmt.Errorf("%w: --retention-age %q: want a duration of 1ms or more, or unlimited", errUsage, a)
		}
		c.RetentionMs = d.Milliseconds()
	}
	switch b := *tf.retentionBytes; b {
	case "":
	case "unlimited":
		c.RetentionBytes = wire.RetentionUnlimited
	default:
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%w: --retention-bytes %q: want a positive number of bytes, or unlimited", errUsage, b)
		}
		c.RetentionBytes = n
	}
	return c, nil
}

// retentionString describes a topic's retention settings.
func retentionString(c wire.TopicConfig) string {
	age, size := "node default", "node default"
	switch {
	case c.RetentionMs > 0:
		age = (time.Duration(c.RetentionMs) * time.Millisecond).String()
	case c.RetentionMs == wire.RetentionUnlimited:
		age = "unlimited"
	}
	switch {
	case c.RetentionBytes > 0:
		size = strconv.FormatInt(c.RetentionBytes, 10) + " bytes"
	case c.RetentionBytes == wire.RetentionUnlimited:
		size = "unlimited"
	}
	return "retention age " + age + ", retention size " + size
}

// newTopicFlags registers the flags of `weir topic SUB`.
func newTopicFlags(sub string, env cli) (*topicFlags, error) {
	tf := &topicFlags{fs: flag.NewFlagSet("topic "+sub, flag.ContinueOnError), wantArgs: 1}
	tf.server = serverFlag(tf.fs, env)
	switch sub {
	case "create":
		tf.partitions = tf.fs.Int("partitions", 1, "number of partitions")
		tf.replicas = tf.fs.Int("replicas", 1, "replication factor")
		tf.retentionAge = tf.fs.String("retention-age", "", "delete segments whose newest record is older than this duration, or unlimited (default: the node's --retention-age)")
		tf.retentionBytes = tf.fs.String("retention-bytes", "", "delete a partition's oldest segments while it is larger than this many bytes, or unlimited (default: the node's --retention-bytes)")
	case "list":
		tf.wantArgs = 0
	case "describe", "delete":
	default:
		return nil, fmt.Errorf("%w: unknown topic subcommand %q (want create, list, describe or delete)", errUsage, sub)
	}
	return tf, nil
}

// topicHelp is `weir topic -h`.
func topicHelp(env cli) error {
	subs := []subcommand{
		{synopsis: "create NAME [--partitions N] [--replicas R] [--retention-age D] [--retention-bytes N]", summary: "create a topic (1 partition, 1 replica, the node's retention by default)"},
		{synopsis: "list", summary: "list topics"},
		{synopsis: "describe NAME", summary: "per partition: leader, replicas, offsets"},
		{synopsis: "delete NAME", summary: "delete a topic"},
	}
	for i, s := range subs {
		tf, err := newTopicFlags(strings.Fields(s.synopsis)[0], env)
		if err != nil {
			return err
		}
		subs[i].flags = tf.fs
	}
	return groupHelp("topic", subs)
}

func listTopics(ctx context.Context, c *client.Client, env cli) error {
	md, err := c.Metadata(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITIONS\tREPLICAS")
	for _, t := range md.Topics {
		if t.Err != nil {
			fmt.Fprintf(w, "%s\t-\t-\t(%v)\n", t.Name, t.Err)
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\n", t.Name, len(t.Partitions), t.Replicas)
	}
	return w.Flush()
}

func describeTopic(ctx context.Context, c *client.Client, name string, env cli) error {
	md, err := c.Metadata(ctx, name)
	if err != nil {
		return err
	}
	if len(md.Topics) != 1 {
		return fmt.Errorf("describe %s: the node described %d topics", name, len(md.Topics))
	}
	t := md.Topics[0]
	if t.Err != nil {
		return fmt.Errorf("describe %s: %w", name, t.Err)
	}
	fmt.Fprintf(env.stdout, "topic %s: %d partitions, replication factor %d, %s\n", t.Name, len(t.Partitions), t.Replicas, retentionString(t.Config))
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tLEADER\tREPLICAS\tGROUP\tHIGH-WATERMARK\tSTART\tEND")
	for _, p := range t.Partitions {
		leader := p.Leader
		if leader == "" {
			leader = "(none)"
		}
		// The raft group as its leader sees it: its voters, then learners (catching up).
		group := strings.Join(p.Voters, ",")
		for _, l := range p.Learners {
			group += "," + l + "(learner)"
		}
		if group == "" {
			group = "-"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Partition, leader, strings.Join(p.Replicas, ","), strings.TrimPrefix(group, ","),
			offset(p.HighWatermark), offset(p.StartOffset), offset(p.EndOffset))
	}
	return w.Flush()
}

// offset prints an offset the node reports, "-" when it does not know it (-1).
func offset(o int64) string {
	if o < 0 {
		return "-"
	}
	return fmt.Sprint(o)
}
