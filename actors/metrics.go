package actors

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the node's Prometheus metrics. A nil *Metrics records nothing, so tests and
// embedded uses need not make one.
type Metrics struct {
	Registry *prometheus.Registry

	recIn, recOut, bytesIn, bytesOut, overload *prometheus.CounterVec
	start, hw, end                             *prometheus.GaugeVec
	hws                                        sync.Map // topic/partition -> high watermark, for lag
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
		m.hws.Store(tp{topic, p}, hw)
	}
}

func (m *Metrics) deletePartition(topic string, p int32) {
	if m != nil {
		ps := strconv.Itoa(int(p))
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

// groupOffsets records a group's committed offset. The offset and the group's lag are reported
// when the metrics are scraped (groupCollector), the lag against the high watermark of that
// moment, so it grows while a group commits nothing.
func (m *Metrics) groupOffsets(group, topic string, p int32, committed int64) {
	if m != nil {
		m.commits.Store(groupPartition{group, topic, p}, committed)
	}
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

// groupCollector reports weir_group_committed_offset for every committed group partition, and
// weir_group_lag for those whose partition runs here.
type groupCollector struct{ m *Metrics }

func (c groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- committedDesc
	ch <- lagDesc
}

func (c groupCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.commits.Range(func(k, v any) bool {
		g, committed := k.(groupPartition), v.(int64)
		labels := []string{g.group, g.topic, strconv.Itoa(int(g.partition))}
		ch <- prometheus.MustNewConstMetric(committedDesc, prometheus.GaugeValue, float64(committed), labels...)
		if hw, ok := c.m.hws.Load(tp{g.topic, g.partition}); ok {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(hw.(int64)-committed, 0)), labels...)
		}
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
