package actors

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// The Kafka admin APIs that describe what Weir has, for Kafka's admin tools (kafka-topics,
// kafka-consumer-groups, kafka-configs): ListGroups and DescribeGroups (Weir's groups, as
// classic groups of the consumer protocol), DescribeConfigs (the settings Weir has, read-only:
// Weir serves no AlterConfigs), DescribeCluster and DescribeTopicPartitions.

// describeRequest answers the requests of this file; nil for any other.
func (k *kafkaListener) describeRequest(req kmsg.Request) kmsg.Response {
	switch r := req.(type) {
	case *kmsg.ListGroupsRequest:
		return k.listGroups(r)
	case *kmsg.DescribeGroupsRequest:
		return k.describeGroups(r)
	case *kmsg.DescribeConfigsRequest:
		return k.describeConfigs(r)
	case *kmsg.DescribeClusterRequest:
		return k.describeCluster(r)
	case *kmsg.DescribeTopicPartitionsRequest:
		return k.describeTopicPartitions(r)
	case *kmsg.DeleteGroupsRequest:
		return k.deleteGroups(r)
	}
	return nil
}

// kafkaGroupType is the type every Weir group has in ListGroups v5: Weir's groups are joined
// with JoinGroup and SyncGroup, Kafka's classic protocol.
const kafkaGroupType = "classic"

// kafkaAssignor is the assignment strategy DescribeGroups reports: Weir's coordinator assigns
// each topic's partitions in ranges over the members sorted by id.
const kafkaAssignor = "range"

// groupState describes a group for ListGroups and DescribeGroups: its coordinator's view, or,
// without one, Empty if it has committed offsets and Dead if it has none. A flow source's
// positions (group "source:<flow>") are no consumer group: Dead, so that DeleteGroups leaves
// them alone (the source, which does not join the group, would start over from the beginning of
// its input at its next start).
func (k *kafkaListener) groupState(group string) (*GroupDescription, string, *wire.Error) {
	if strings.HasPrefix(group, sourceGroupPrefix) {
		return &GroupDescription{Group: group}, groupStateDead, nil
	}
	d, e := k.n.DescribeGroup(group)
	if e != nil {
		return nil, "", e
	}
	if len(d.Members) > 0 {
		return d, d.State(), nil
	}
	// Without members a group lives on in its committed offsets; without those either it is
	// gone, as Kafka drops an empty group that has no offsets.
	has, e := k.n.HasCommits(group)
	if e != nil {
		return nil, "", e
	}
	if !has {
		return d, groupStateDead, nil
	}
	return d, groupStateEmpty, nil
}

// groupLookup is what groupState found of a group.
type groupLookup struct {
	d     *GroupDescription
	state string
	e     *wire.Error
}

// groupQueryParallel bounds the groups groupStates looks up at a time.
const groupQueryParallel = 64

// groupStates looks up the states of groups, each once (an empty name is not looked up),
// several at a time: one after the other, a request naming many groups whose coordinators do
// not answer (their node unreachable, or busy) would take groupQueryTimeout for each.
func (k *kafkaListener) groupStates(groups []string) map[string]groupLookup {
	out := make(map[string]groupLookup, len(groups))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, groupQueryParallel)
		seen = make(map[string]bool, len(groups))
	)
	for _, g := range groups {
		if seen[g] || g == "" {
			continue
		}
		seen[g] = true
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, state, e := k.groupState(g)
			mu.Lock()
			out[g] = groupLookup{d, state, e}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (k *kafkaListener) listGroups(r *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := kmsg.NewPtrListGroupsResponse()
	if len(r.TypesFilter) > 0 && !slices.ContainsFunc(r.TypesFilter, func(t string) bool { return strings.EqualFold(t, kafkaGroupType) }) {
		return resp // Weir has only classic groups
	}
	groups, e := k.n.Groups()
	if e != nil {
		resp.ErrorCode = groupCode(e)
		return resp
	}
	// The state is looked up at every version: a coordinator left without members or offsets
	// is no group (Kafka drops such a group), and is not listed.
	states := k.groupStates(groups)
	for _, g := range groups {
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupType = g, "consumer", kafkaGroupType
		st := states[g]
		state, e := st.state, st.e
		if e != nil {
			resp.ErrorCode = groupCode(e)
			resp.Groups = nil
			return resp
		}
		if state == groupStateDead {
			continue
		}
		if len(r.StatesFilter) > 0 && !slices.ContainsFunc(r.StatesFilter, func(s string) bool { return strings.EqualFold(s, state) }) {
			continue
		}
		if r.Version >= 4 {
			lg.GroupState = state
		}
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

func (k *kafkaListener) describeGroups(r *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	states := k.groupStates(r.Groups)
	// A group named again is answered once: each answer carries every member's subscription
	// and assignment, and a request naming a group with large ones over and over would have
	// the node build an answer thousands of times its size. Kafka's clients name a group once.
	for _, g := range firstOfEach(r.Groups) {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = g
		if g == "" {
			dg.ErrorCode = kafkaInvalidGroupID
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		st := states[g]
		d, state, e := st.d, st.state, st.e
		switch {
		case e != nil:
			dg.ErrorCode = groupCode(e)
			if r.Version >= 6 {
				msg := e.Error()
				dg.ErrorMessage = &msg
			}
		case state == groupStateDead:
			// As Kafka: the state Dead, and from v6 on GROUP_ID_NOT_FOUND.
			dg.State = state
			if r.Version >= 6 {
				dg.ErrorCode = kafkaGroupIDNotFound
				msg := "group " + g + " does not exist"
				dg.ErrorMessage = &msg
			}
		default:
			dg.State, dg.ProtocolType = state, "consumer"
			if state == groupStateStable {
				dg.Protocol = kafkaAssignor
			}
			for _, m := range d.Members {
				dm := kmsg.NewDescribeGroupsResponseGroupMember()
				dm.MemberID, dm.ClientID, dm.ClientHost = m.ID, m.ClientID, m.ClientHost
				if state == groupStateStable {
					// Kafka gives a member's subscription and assignment only when stable.
					meta := kmsg.NewConsumerMemberMetadata()
					meta.Topics = m.Topics
					dm.ProtocolMetadata = meta.AppendTo(nil)
					dm.MemberAssignment = consumerAssignment(m.Assigned)
				}
				dg.Members = append(dg.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

// Kafka error codes of DescribeGroups and DeleteGroups.
const (
	kafkaInvalidGroupID = 24 // an empty group id
	kafkaNonEmptyGroup  = 68 // DeleteGroups of a group that has members
)

// deleteGroups deletes groups without members: their committed offsets (Kafka's DeleteGroups).
// The coordinator refuses the deletion if a member joined since the group was looked at.
func (k *kafkaListener) deleteGroups(r *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	states := k.groupStates(r.Groups)
	// A group named again is deleted once: each deletion is a record in __offsets.
	for _, g := range firstOfEach(r.Groups) {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = g
		fail := func(code int16, msg string) {
			rg.ErrorCode = code
			if r.Version >= 3 {
				rg.ErrorMessage = &msg
			}
		}
		if g == "" {
			fail(kafkaInvalidGroupID, "empty group id")
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		st := states[g]
		state, e := st.state, st.e
		switch {
		case e != nil:
			fail(groupCode(e), e.Error())
		case state == groupStateDead:
			fail(kafkaGroupIDNotFound, "group "+g+" does not exist")
		case state != groupStateEmpty:
			fail(kafkaNonEmptyGroup, "group "+g+" has members")
		default:
			pid, err := k.n.coordinatorFor(g)
			if err != nil {
				e = wire.AsError(err)
				fail(groupCode(e), e.Error())
				break
			}
			res, e := k.srv.request(pid, OffsetsTopic+"/0", &DeleteGroupOffsets{Group: g}, k.srv.cfg.RequestTimeout)()
			if pr, ok := res.(*ProduceReply); e == nil && ok {
				e = pr.Err
			}
			switch {
			case e == nil:
			case e.Code == wire.CodeInvalidRequest: // a member joined meanwhile
				fail(kafkaNonEmptyGroup, e.Error())
			default:
				fail(groupCode(e), e.Error())
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// consumerAssignment encodes a member's partitions in the consumer protocol's assignment
// format (what SyncGroup hands the member and DescribeGroups reports).
func consumerAssignment(parts []wire.TopicPartitions) []byte {
	ma := kmsg.NewConsumerMemberAssignment()
	for _, tp := range parts {
		t := kmsg.NewConsumerMemberAssignmentTopic()
		t.Topic, t.Partitions = tp.Topic, tp.Partitions
		ma.Topics = append(ma.Topics, t)
	}
	return ma.AppendTo(nil)
}

// kafkaClientHost is how Kafka shows a member's host: its address after a slash.
func kafkaClientHost(remote string) string {
	if remote == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	return "/" + host
}

// kafkaConfig is one config entry of DescribeConfigs. synonym, if not "", is the broker
// setting the value comes from when the topic does not set it.
type kafkaConfig struct {
	name, value string
	source      kmsg.ConfigSource
	typ         kmsg.ConfigType
	synonym     string
	doc         string
}

// topicConfigs are a topic's settings: those its creation set (retention.ms, retention.bytes)
// are DYNAMIC_TOPIC_CONFIG; the others are the node's, STATIC_BROKER_CONFIG where the node
// was given a value other than storage's default, DEFAULT_CONFIG otherwise.
func (k *kafkaListener) topicConfigs(tm TopicMeta) []kafkaConfig {
	eff := k.n.topicReplicaConfig(tm, 0, "").Log // what the topic's partitions run with
	node, def := k.n.cfg.Log, storage.DefaultConfig()
	nodeSource := func(set bool) kmsg.ConfigSource {
		if set {
			return kmsg.ConfigSourceStaticBrokerConfig
		}
		return kmsg.ConfigSourceDefaultConfig
	}
	retentionMs := kafkaConfig{name: "retention.ms", value: "-1", typ: kmsg.ConfigTypeLong, synonym: "log.retention.ms",
		source: nodeSource(node.RetentionAge > 0), doc: "segments whose newest record is older are deleted; -1: unlimited"}
	if eff.RetentionAge > 0 {
		retentionMs.value = strconv.FormatInt(eff.RetentionAge.Milliseconds(), 10)
	}
	if tm.Config.RetentionMs != 0 {
		retentionMs.source = kmsg.ConfigSourceDynamicTopicConfig
	}
	retentionBytes := kafkaConfig{name: "retention.bytes", value: "-1", typ: kmsg.ConfigTypeLong, synonym: "log.retention.bytes",
		source: nodeSource(node.RetentionBytes > 0), doc: "a partition's oldest segments are deleted while it is larger; -1: unlimited"}
	if eff.RetentionBytes > 0 {
		retentionBytes.value = strconv.FormatInt(eff.RetentionBytes, 10)
	}
	if tm.Config.RetentionBytes != 0 {
		retentionBytes.source = kmsg.ConfigSourceDynamicTopicConfig
	}
	cfgs := []kafkaConfig{
		{name: "cleanup.policy", value: "delete", typ: kmsg.ConfigTypeList, synonym: "log.cleanup.policy",
			source: kmsg.ConfigSourceDefaultConfig, doc: "Weir deletes old segments; it does not compact"},
		{name: "compression.type", value: "uncompressed", typ: kmsg.ConfigTypeString, synonym: "compression.type",
			source: kmsg.ConfigSourceDefaultConfig, doc: "Weir stores and serves records uncompressed"},
		{name: "max.message.bytes", value: strconv.Itoa(storage.MaxBatchSize), typ: kmsg.ConfigTypeInt, synonym: "message.max.bytes",
			source: kmsg.ConfigSourceDefaultConfig, doc: "the largest record batch a partition takes"},
		{name: "message.timestamp.type", value: "CreateTime", typ: kmsg.ConfigTypeString, synonym: "log.message.timestamp.type",
			source: kmsg.ConfigSourceDefaultConfig, doc: "records keep the producer's timestamps"},
		{name: "min.insync.replicas", value: strconv.Itoa(int(tm.Replicas/2 + 1)), typ: kmsg.ConfigTypeInt,
			source: kmsg.ConfigSourceDefaultConfig, doc: "a majority of the replicas (Raft): acks=all waits for it"},
		retentionBytes,
		retentionMs,
		{name: "segment.bytes", value: strconv.FormatInt(eff.SegmentBytes, 10), typ: kmsg.ConfigTypeInt, synonym: "log.segment.bytes",
			source: nodeSource(node.SegmentBytes != def.SegmentBytes), doc: "a segment is rolled at this size"},
		{name: "unclean.leader.election.enable", value: "false", typ: kmsg.ConfigTypeBoolean, synonym: "unclean.leader.election.enable",
			source: kmsg.ConfigSourceDefaultConfig, doc: "leaders are elected by Raft among up-to-date replicas"},
	}
	if eff.SegmentAge > 0 {
		src := nodeSource(node.SegmentAge > 0)
		if tm.Config.RetentionMs > 0 && (node.SegmentAge == 0 || eff.SegmentAge < node.SegmentAge) {
			src = kmsg.ConfigSourceDynamicTopicConfig // rolled at the topic's retention age
		}
		cfgs = append(cfgs, kafkaConfig{name: "segment.ms", value: strconv.FormatInt(eff.SegmentAge.Milliseconds(), 10),
			typ: kmsg.ConfigTypeLong, synonym: "log.roll.ms", source: src, doc: "a segment is rolled once its first batch is this old"})
	}
	return cfgs
}

// brokerConfigs are the node's settings under Kafka's broker config names.
func (k *kafkaListener) brokerConfigs() []kafkaConfig {
	node, def := k.n.cfg.Log, storage.DefaultConfig()
	coord := k.n.cfg.Coordinator
	coord.defaults()
	set := func(b bool) kmsg.ConfigSource {
		if b {
			return kmsg.ConfigSourceStaticBrokerConfig
		}
		return kmsg.ConfigSourceDefaultConfig
	}
	retentionMs, retentionBytes := "-1", "-1"
	if node.RetentionAge > 0 {
		retentionMs = strconv.FormatInt(node.RetentionAge.Milliseconds(), 10)
	}
	if node.RetentionBytes > 0 {
		retentionBytes = strconv.FormatInt(node.RetentionBytes, 10)
	}
	fixed := kmsg.ConfigSourceDefaultConfig
	cfgs := []kafkaConfig{
		{name: "auto.create.topics.enable", value: "false", typ: kmsg.ConfigTypeBoolean, source: fixed},
		{name: "broker.id", value: strconv.Itoa(int(k.brokerID(k.n.raftID))), typ: kmsg.ConfigTypeInt, source: kmsg.ConfigSourceStaticBrokerConfig},
		{name: "default.replication.factor", value: "1", typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "group.initial.rebalance.delay.ms", value: strconv.FormatInt(coord.InitialDelay.Milliseconds(), 10), typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "group.max.session.timeout.ms", value: strconv.FormatInt(coord.MaxSessionTimeout.Milliseconds(), 10), typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "group.min.session.timeout.ms", value: strconv.FormatInt(coord.MinSessionTimeout.Milliseconds(), 10), typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "log.cleanup.policy", value: "delete", typ: kmsg.ConfigTypeList, source: fixed},
		{name: "log.retention.bytes", value: retentionBytes, typ: kmsg.ConfigTypeLong, source: set(node.RetentionBytes > 0)},
		{name: "log.retention.ms", value: retentionMs, typ: kmsg.ConfigTypeLong, source: set(node.RetentionAge > 0)},
		{name: "log.segment.bytes", value: strconv.FormatInt(node.SegmentBytes, 10), typ: kmsg.ConfigTypeInt, source: set(node.SegmentBytes != def.SegmentBytes)},
		{name: "message.max.bytes", value: strconv.Itoa(storage.MaxBatchSize), typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "num.partitions", value: "1", typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "offsets.topic.num.partitions", value: "1", typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "socket.request.max.bytes", value: strconv.Itoa(maxKafkaFrame), typ: kmsg.ConfigTypeInt, source: fixed},
		{name: "unclean.leader.election.enable", value: "false", typ: kmsg.ConfigTypeBoolean, source: fixed},
	}
	if node.SegmentAge > 0 {
		cfgs = append(cfgs, kafkaConfig{name: "log.roll.ms", value: strconv.FormatInt(node.SegmentAge.Milliseconds(), 10), typ: kmsg.ConfigTypeLong, source: kmsg.ConfigSourceStaticBrokerConfig})
	}
	slices.SortFunc(cfgs, func(a, b kafkaConfig) int { return strings.Compare(a.name, b.name) })
	return cfgs
}

func (k *kafkaListener) describeConfigs(r *kmsg.DescribeConfigsRequest) *kmsg.DescribeConfigsResponse {
	resp := kmsg.NewPtrDescribeConfigsResponse()
	// A resource asked for again (same type, name and config names) is answered once: every
	// repeat of a broker would otherwise add all its configs to the answer, some 500 bytes for
	// 7 of request, and a request of repeats could have the node build an answer of gigabytes.
	// Kafka's clients name each resource once.
	seen := map[string]bool{}
	for _, res := range r.Resources {
		key := describeConfigsKey(res)
		if seen[key] {
			continue
		}
		seen[key] = true
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
		fail := func(code int16, msg string) {
			rr.ErrorCode, rr.ErrorMessage = code, &msg
		}
		var cfgs []kafkaConfig
		switch res.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			tm, ok := k.n.Topic(res.ResourceName)
			if !ok || res.ResourceName == MetaTopic || res.ResourceName == OffsetsTopic {
				fail(kafkaUnknownTopic, "topic "+res.ResourceName+" does not exist")
				break
			}
			cfgs = k.topicConfigs(tm)
		case kmsg.ConfigResourceTypeBroker:
			self := strconv.Itoa(int(k.brokerID(k.n.raftID)))
			if res.ResourceName != "" && res.ResourceName != self {
				fail(kafkaInvalidRequest, "this is broker "+self+", not "+res.ResourceName)
				break
			}
			cfgs = k.brokerConfigs()
		case kmsg.ConfigResourceTypeGroupConfig:
			// Weir's groups have no settings of their own: none to list.
		default:
			fail(kafkaInvalidRequest, "Weir describes the configs of topics, brokers and groups only")
		}
		for _, c := range cfgs {
			if res.ConfigNames != nil && !slices.Contains(res.ConfigNames, c.name) {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			value := c.value
			rc.Name, rc.Value, rc.Source, rc.ConfigType = c.name, &value, c.source, c.typ
			rc.ReadOnly = true // Weir serves no AlterConfigs
			rc.IsDefault = c.source == kmsg.ConfigSourceDefaultConfig
			if r.Version == 0 && c.source == kmsg.ConfigSourceDynamicTopicConfig {
				rc.Source = -1 // v0 has no sources
			}
			if r.IncludeSynonyms {
				rc.ConfigSynonyms = configSynonyms(c)
			}
			if r.IncludeDocumentation && c.doc != "" {
				doc := c.doc
				rc.Documentation = &doc
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// describeConfigsKey identifies a DescribeConfigs resource with the configs asked for (none
// listed, all of them, is not the same as an empty list).
func describeConfigsKey(res kmsg.DescribeConfigsRequestResource) string {
	var b strings.Builder
	b.WriteByte(byte(res.ResourceType))
	b.WriteString(strconv.Quote(res.ResourceName))
	if res.ConfigNames == nil {
		b.WriteByte('*')
	}
	for _, c := range res.ConfigNames {
		b.WriteString(strconv.Quote(c))
	}
	return b.String()
}

// configSynonyms lists where a topic config's value comes from, the one in force first, as
// Kafka does: the topic's own setting, then the broker's.
func configSynonyms(c kafkaConfig) []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	var out []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
	add := func(name string, src kmsg.ConfigSource) {
		s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		v := c.value
		s.Name, s.Value, s.Source = name, &v, src
		out = append(out, s)
	}
	switch c.source {
	case kmsg.ConfigSourceDynamicTopicConfig:
		add(c.name, c.source)
	case kmsg.ConfigSourceStaticBrokerConfig, kmsg.ConfigSourceDefaultConfig:
		name := c.synonym
		if name == "" {
			name = c.name
		}
		add(name, c.source)
	}
	return out
}

// kafkaBrokers are the live nodes that have a Kafka listener, as Kafka brokers; this node's
// address is the one it advertises.
func (k *kafkaListener) kafkaBrokers() []kmsg.MetadataResponseBroker {
	var out []kmsg.MetadataResponseBroker
	for _, m := range k.n.Members() {
		addr := m.Kafka
		if m.ID == k.n.raftID {
			addr = k.advertised()
		}
		if addr == "" {
			continue
		}
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = k.brokerID(m.ID)
		b.Host, b.Port = splitHostPort(addr)
		out = append(out, b)
	}
	return out
}

func (k *kafkaListener) describeCluster(r *kmsg.DescribeClusterRequest) *kmsg.DescribeClusterResponse {
	resp := kmsg.NewPtrDescribeClusterResponse()
	resp.EndpointType = 1 // brokers
	if r.Version >= 1 && r.EndpointType != 1 {
		resp.ErrorCode = kafkaInvalidRequest
		msg := "Weir has brokers only: no separate controllers"
		resp.ErrorMessage = &msg
		return resp
	}
	resp.ClusterID, resp.ControllerID = kafkaClusterID, k.brokerID(k.n.raftID)
	for _, b := range k.kafkaBrokers() {
		db := kmsg.NewDescribeClusterResponseBroker()
		db.NodeID, db.Host, db.Port = b.NodeID, b.Host, b.Port
		resp.Brokers = append(resp.Brokers, db)
	}
	return resp
}

// describeTopicPartitions answers from the same view as Metadata, topics in name order, at
// most ResponsePartitionLimit partitions (2,000 when not given) from the cursor on.
func (k *kafkaListener) describeTopicPartitions(r *kmsg.DescribeTopicPartitionsRequest) *kmsg.DescribeTopicPartitionsResponse {
	resp := kmsg.NewPtrDescribeTopicPartitionsResponse()
	var names []string
	for _, t := range r.Topics {
		names = append(names, t.Topic)
	}
	if len(names) == 0 {
		names = k.n.TopicNames()
	}
	slices.Sort(names)
	names = slices.Compact(names)
	limit := int(r.ResponsePartitionLimit)
	if limit <= 0 {
		limit = 2000
	}
	if r.Cursor != nil {
		i, _ := slices.BinarySearch(names, r.Cursor.Topic)
		names = names[i:]
	}
	// Only the topics this answer reaches are described (every partition's status is asked
	// for); the cursor names the next one. Describing every topic from the cursor on made
	// paging through a cluster's topics quadratic, and a partition slow to answer anywhere
	// after a page held the page up.
	var rest []string
	for i, budget := 0, limit; i < len(names); i++ {
		if budget <= 0 {
			names, rest = names[:i], names[i:]
			break
		}
		if tm, ok := k.n.Topic(names[i]); ok {
			first := 0
			if r.Cursor != nil && names[i] == r.Cursor.Topic {
				first = int(max(r.Cursor.Partition, 0))
			}
			budget -= max(int(tm.Partitions)-first, 0)
		}
	}
	mreq := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		t := kmsg.NewMetadataRequestTopic()
		name := n
		t.Topic = &name
		mreq.Topics = append(mreq.Topics, t)
	}
	if len(mreq.Topics) == 0 {
		return resp
	}
	md := k.metadata(mreq)
	for _, mt := range md.Topics {
		name := ""
		if mt.Topic != nil {
			name = *mt.Topic
		}
		first := int32(0)
		if r.Cursor != nil && name == r.Cursor.Topic {
			first = r.Cursor.Partition
		}
		if limit == 0 {
			resp.NextCursor = &kmsg.DescribeTopicPartitionsResponseNextCursor{Topic: name, Partition: first}
			break
		}
		rt := kmsg.NewDescribeTopicPartitionsResponseTopic()
		rt.Topic, rt.ErrorCode = mt.Topic, mt.ErrorCode
		for _, p := range mt.Partitions {
			if p.Partition < first {
				continue
			}
			if limit == 0 {
				resp.NextCursor = &kmsg.DescribeTopicPartitionsResponseNextCursor{Topic: name, Partition: p.Partition}
				break
			}
			limit--
			rp := kmsg.NewDescribeTopicPartitionsResponseTopicPartition()
			rp.ErrorCode, rp.Partition, rp.LeaderID, rp.LeaderEpoch = p.ErrorCode, p.Partition, p.Leader, p.LeaderEpoch
			rp.Replicas, rp.ISR = p.Replicas, p.ISR
			rp.EligibleLeaderReplicas, rp.LastKnownELR, rp.OfflineReplicas = []int32{}, []int32{}, []int32{}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
		if resp.NextCursor != nil {
			break
		}
	}
	if resp.NextCursor == nil && len(rest) > 0 {
		resp.NextCursor = &kmsg.DescribeTopicPartitionsResponseNextCursor{Topic: rest[0], Partition: 0}
	}
	return resp
}
