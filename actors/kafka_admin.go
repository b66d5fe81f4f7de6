package actors

import (
	"crypto/rand"
	"encoding/binary"
	"reflect"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
)

// Kafka error codes of the admin APIs.
const (
	kafkaUnsupportedVersion   = 35
	kafkaTopicAlreadyExists   = 36
	kafkaInvalidPartitions    = 37
	kafkaInvalidReplication   = 38
	kafkaInvalidConfig        = 40
	kafkaInvalidTopic         = 17
	kafkaTransactionsDisabled = 15 // COORDINATOR_NOT_AVAILABLE: no transaction coordinator
)

// adminCode maps a topic command's error.
func adminCode(e *wire.Error, partitions, replicas int32) int16 {
	if e == nil {
		return 0
	}
	switch e.Code {
	case wire.CodeTopicExists:
		return kafkaTopicAlreadyExists
	case wire.CodeInvalidRequest:
		switch {
		case partitions < 1 || partitions > MaxPartitions:
			return kafkaInvalidPartitions
		case replicas < 1 || replicas > MaxReplicas:
			return kafkaInvalidReplication
		}
		return kafkaInvalidTopic
	}
	return kafkaCode(e)
}

func (k *kafkaListener) createTopics(r *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := kmsg.NewPtrCreateTopicsResponse()
	// A topic named more than once is refused each time (INVALID_REQUEST, as Kafka does): with
	// ValidateOnly each entry was answered with the topic's configs, a large answer of a small
	// request.
	count := map[string]int{}
	for _, t := range r.Topics {
		count[t.Topic]++
	}
	for _, t := range r.Topics {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t.Topic, t.NumPartitions, t.ReplicationFactor
		if count[t.Topic] > 1 {
			rt.ErrorCode = kafkaInvalidRequest
			msg := "the topic is named more than once in the request"
			rt.ErrorMessage = &msg
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		parts, repl := t.NumPartitions, int32(t.ReplicationFactor)
		if parts == -1 {
			parts = 1
		}
		if repl == -1 {
			repl = 1
		}
		var cfg wire.TopicConfig
		code, msg := int16(0), ""
		if len(t.ReplicaAssignment) > 0 {
			code, msg = kafkaInvalidRequest, "replica assignments are not served: Weir places replicas itself"
		}
		for _, c := range t.Configs {
			if code != 0 || c.Value == nil {
				continue
			}
			var err error
			switch c.Name {
			case "retention.ms":
				cfg.RetentionMs, err = strconv.ParseInt(*c.Value, 10, 64)
			case "retention.bytes":
				cfg.RetentionBytes, err = strconv.ParseInt(*c.Value, 10, 64)
			default:
				code, msg = kafkaInvalidConfig, "config "+c.Name+" is not served (retention.ms and retention.bytes are)"
			}
			if err != nil {
				code, msg = kafkaInvalidConfig, "config "+c.Name+": "+err.Error()
			}
		}
		if code == 0 && !r.ValidateOnly {
			res := k.srv.admin(&CreateTopic{Name: t.Topic, Partitions: parts, Replicas: repl, Config: cfg}, t.Topic, true)
			code = adminCode(res.Err, parts, repl)
			if res.Err != nil {
				msg = res.Err.Error()
			}
		}
		rt.ErrorCode = code
		if msg != "" {
			rt.ErrorMessage = &msg
		}
		if code == 0 && r.Version >= 5 {
			// The created topic's configs, as DescribeConfigs gives them (the Java AdminClient
			// reads them and fails on none).
			tm, ok := k.n.Topic(t.Topic)
			if !ok || r.ValidateOnly {
				tm = TopicMeta{Name: t.Topic, Partitions: parts, Replicas: repl, Config: cfg}
			}
			for _, c := range k.topicConfigs(tm) {
				rc := kmsg.NewCreateTopicsResponseTopicConfig()
				v := c.value
				rc.Name, rc.Value, rc.ReadOnly, rc.Source = c.name, &v, true, int8(c.source)
				rt.Configs = append(rt.Configs, rc)
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (k *kafkaListener) deleteTopics(r *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := kmsg.NewPtrDeleteTopicsResponse()
	names := r.TopicNames
	if r.Version >= 6 {
		names = nil
		for _, t := range r.Topics {
			if t.Topic != nil {
				names = append(names, *t.Topic)
			}
		}
	}
	count := map[string]int{}
	for _, name := range names {
		count[name]++
	}
	for _, name := range names {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		n := name
		rt.Topic = &n
		if count[name] > 1 { // refused each time, as Kafka does, and not deleted
			rt.ErrorCode = kafkaInvalidRequest
			msg := "the topic is named more than once in the request"
			rt.ErrorMessage = &msg
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		res := k.srv.admin(&DeleteTopic{Name: name}, name, false)
		rt.ErrorCode = kafkaCode(res.Err)
		if res.Err != nil {
			msg := res.Err.Error()
			rt.ErrorMessage = &msg
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// initProducerID gives an idempotent Kafka producer a fresh producer id, every time (a bump
// too): Weir's partitions track an idempotent producer by id and sequence alone, without
// epochs, so a producer that starts its sequences over must do so under a new id.
// Transactional producers are refused.
func (k *kafkaListener) initProducerID(r *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := kmsg.NewPtrInitProducerIDResponse()
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kafkaTransactionsDisabled
		return resp
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	resp.ProducerID = int64(binary.BigEndian.Uint64(b[:])&(1<<46-1)) + 1 // < 2^46: see kafkaToWeir
	resp.ProducerEpoch = 0
	return resp
}

// unsupportedVersion answers a request of a served API at a version not served, when its
// response has a top-level error code; nil otherwise (the connection is then closed).
func unsupportedVersion(req kmsg.Request) kmsg.Response {
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	f := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode")
	if !f.IsValid() || f.Kind() != reflect.Int16 || !f.CanSet() {
		return nil
	}
	f.SetInt(kafkaUnsupportedVersion)
	return resp
}
