package actors

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weirhq/weir/cluster/wire"
)

// Metrics are the node's Prometheus metrics. A nil *Metrics records nothing, so tests and
// embedded uses need not make one.
type Metrics struct {
	Registry *prometheus.Registry

	recIn, recOut, bytesIn, bytesOut, overload *prometheus.CounterVec
	start, hw, end, leader                     *prometheus.GaugeVec
	hws                                        sync.Map // tp -> partitionPos of each partition running here
	restarts, failures                         *prometheus.CounterVec
	commits                                    sync.Map // groupPartition -> committed offset
	sourceRecords, sinkRecords                 *prometheus.CounterVec
}

// NewMetrics makes the metrics in a new registry of their own (no process-wide globals).
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "weir", Name: name, Help: help}, labels)
		m.Registry.MustRegister(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "weir", Name: name, Help: help}, labels)
		m.Registry.MustRegister(g)
		return g
	}
	m.recIn = counter("records_in_total", "Records appended to the log, by topic.", "topic")
	m.bytesIn = counter("bytes_in_total", "Batch bytes appended to the log, by topic.", "topic")
	m.recOut = counter("records_out_total", "Records returned by fetches, by topic.", "topic")
	m.bytesOut = counter("bytes_out_total", "Batch bytes returned by fetches, by topic.", "topic")
	m.overload = counter("produce_overloaded_total", "Produce requests refused because too many bytes were in flight.", "topic")
	m.start = gauge("log_start_offset", "First offset in a partition's log.", "topic", "partition")
	m.hw = gauge("high_watermark", "Committed offset (high watermark) of a partition.", "topic", "partition")
	m.end = gauge("log_end_offset", "Offset after the last record appended to a partition's log.", "topic", "partition")
	m.leader = gauge("partition_leader", "1 while this node's replica leads the partition, else 0 (__offsets' leader runs the consumer-group coordinators).", "topic", "partition")
	m.restarts = counter("actor_restarts_total", "Actor restarts by their supervisor, by kind of actor.", "kind")
	m.failures = counter("actor_failures_total", "Actor failures (panics) seen by a supervisor, by kind of actor.", "kind")
	m.Registry.MustRegister(groupCollector{m})
	m.sourceRecords = counter("source_records_total", "Records a flow's source had acknowledged by the topic.", "flow")
	m.sinkRecords = counter("sink_records_total", "Records a flow's sink made durable.", "flow")
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) recordsIn(topic string, records, bytes int) {
	if m != nil {
		m.recIn.WithLabelValues(topic).Add(float64(records))
		m.bytesIn.WithLabelValues(topic).Add(float64(bytes))
	}
}

func (m *Metrics) recordsOut(topic string, records, bytes int) {
	if m != nil {
		m.recOut.WithLabelValues(topic).Add(float64(records))
		m.bytesOut.WithLabelValues(topic).Add(float64(bytes))
	}
}

func (m *Metrics) overloaded(topic string) {
	if m != nil {
		m.overload.WithLabelValues(topic).Inc()
	}
}

func (m *Metrics) partitionOffsets(topic string, p int32, start, hw, end int64) {
	if m != nil {
		ps := strconv.Itoa(int(p))
		m.start.WithLabelValues(topic, ps).Set(float64(start))
		m.hw.WithLabelValues(topic, ps).Set(float64(hw))
		m.end.WithLabelValues(topic, ps).Set(float64(end))
		m.hws.Store(tp{topic, p}, partitionPos{start, hw})
	}
}

// leading records whether this node's replica of the partition leads it.
func (m *Metrics) leading(topic string, p int32, lead bool) {
	if m != nil {
		v := 0.0
		if lead {
			v = 1
		}
		m.leader.WithLabelValues(topic, strconv.Itoa(int(p))).Set(v)
	}
}

func (m *Metrics) deletePartition(topic string, p int32) {
	if m != nil {
		ps := strconv.Itoa(int(p))
		m.leader.DeleteLabelValues(topic, ps)
		m.start.DeleteLabelValues(topic, ps)
		m.hw.DeleteLabelValues(topic, ps)
		m.end.DeleteLabelValues(topic, ps)
		m.hws.Delete(tp{topic, p})
		m.commits.Range(func(k, _ any) bool {
			if g := k.(groupPartition); g.topic == topic && g.partition == p {
				m.commits.Delete(k)
			}
			return true
		})
	}
}

func (m *Metrics) restart(kind string) {
	if m != nil {
		m.restarts.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) failure(kind string) {
	if m != nil {
		m.failures.WithLabelValues(kind).Inc()
	}
}

// groupOffsets records an offset that __offsets stored (or replayed at its start) for a group
// partition; a flow source's position (partition -1) is not one. The offset and the group's lag
// are reported when the metrics are scraped (groupCollector), the lag against the high watermark
// of that moment, so it grows while a group commits nothing.
func (m *Metrics) groupOffsets(group string, o wire.PartitionOffset) {
	if m != nil && o.Partition >= 0 {
		m.commits.Store(groupPartition{group, o.Topic, o.Partition}, o.Offset)
	}
}

// forgetGroupTopic drops the groups' offsets of a topic whose offsets __offsets deleted.
func (m *Metrics) forgetGroupTopic(topic string) {
	if m == nil {
		return
	}
	m.commits.Range(func(k, _ any) bool {
		if k.(groupPartition).topic == topic {
			m.commits.Delete(k)
		}
		return true
	})
}

// forgetGroup drops the offsets of a group whose offsets __offsets deleted.
func (m *Metrics) forgetGroup(group string) {
	if m == nil {
		return
	}
	m.commits.Range(func(k, _ any) bool {
		if k.(groupPartition).group == group {
			m.commits.Delete(k)
		}
		return true
	})
}

type groupPartition struct {
	group, topic string
	partition    int32
}

var (
	groupLabels   = []string{"group", "topic", "partition"}
	committedDesc = prometheus.NewDesc("weir_group_committed_offset", "A group's committed offset.", groupLabels, nil)
	lagDesc       = prometheus.NewDesc("weir_group_lag",
		"Records between a group's committed offset and the partition's high watermark, as of the scrape.", groupLabels, nil)
)

// partitionPos is where a partition's log starts and its high watermark.
type partitionPos struct{ start, hw int64 }

// groupLag is the number of committed records of topic's partitions 0..partitions-1 after
// group's committed offsets (after the log start where the group committed nothing).
func (m *Metrics) groupLag(group, topic string, partitions int32) (int64, error) {
	var lag int64
	for p := range partitions {
		v, ok := m.hws.Load(tp{topic, p})
		if !ok {
			return 0, fmt.Errorf("partition %s/%d does not run here", topic, p)
		}
		pos := v.(partitionPos)
		from := pos.start
		if c, ok := m.commits.Load(groupPartition{group, topic, p}); ok {
			from = max(from, c.(int64))
		}
		lag += max(pos.hw-from, 0)
	}
	return lag, nil
}

// groupCollector reports weir_group_committed_offset and weir_group_lag for the committed group
// partitions whose partition runs here (commits replayed for deleted topics are left out).
type groupCollector struct{ m *Metrics }

func (c groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- committedDesc
	ch <- lagDesc
}

func (c groupCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.commits.Range(func(k, v any) bool {
		g, committed := k.(groupPartition), v.(int64)
		pos, ok := c.m.hws.Load(tp{g.topic, g.partition})
		if !ok {
			return true
		}
		labels := []string{g.group, g.topic, strconv.Itoa(int(g.partition))}
		ch <- prometheus.MustNewConstMetric(committedDesc, prometheus.GaugeValue, float64(committed), labels...)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(pos.(partitionPos).hw-committed, 0)), labels...)
		return true
	})
}

// SourceRecords counts records of a flow's source acknowledged by the topic.
func (m *Metrics) SourceRecords(flow string, n int) {
	if m != nil {
		m.sourceRecords.WithLabelValues(flow).Add(float64(n))
	}
}

// SinkRecords counts records a flow's sink made durable.
func (m *Metrics) SinkRecords(flow string, n int) {
	if m != nil {
		m.sinkRecords.WithLabelValues(flow).Add(float64(n))
	}
}
