package actors

import (
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
)

// Kafka consumer groups are Weir's groups: JoinGroup joins the group's Weir coordinator (which
// assigns the partitions itself, range by member), SyncGroup hands each member the share the
// coordinator gave it (encoded in the consumer protocol's assignment format), and Heartbeat,
// LeaveGroup, OffsetCommit and OffsetFetch are Weir's own calls, so a Kafka consumer and Weir's
// group consumer in one group share its partitions and its committed offsets.
//
// No member is told it is the leader (the leader id is one no member has), so no client computes
// an assignment: the plan a client might send in SyncGroup is ignored.

// Kafka error codes of the group APIs.
const (
	kafkaCoordinatorNotAvailable = 15
	kafkaIllegalGeneration       = 22
	kafkaInconsistentProtocol    = 23
	kafkaUnknownMemberID         = 25
	kafkaRebalanceInProgress     = 27
	kafkaGroupIDNotFound         = 69
)

// kafkaLeader is the leader id given to every member: no member has it.
const kafkaLeader = "weir-coordinator"

// kafkaAssignments keeps, per group and member, the partitions of the generation the member
// last joined, for its SyncGroup.
type kafkaAssignments struct {
	mu sync.Mutex
	m  map[string]kafkaAssigned // group + "\x00" + member
}

type kafkaAssigned struct {
	generation int32
	parts      []wire.TopicPartitions
}

// forgetGroup drops what the members of group were given: its coordinator stopped, idle,
// so none of them is a member any more.
func (a *kafkaAssignments) forgetGroup(group string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.m {
		if strings.HasPrefix(k, group+"\x00") {
			delete(a.m, k)
		}
	}
}

func groupCode(e *wire.Error) int16 {
	if e == nil {
		return 0
	}
	switch e.Code {
	case wire.CodeRebalance:
		return kafkaRebalanceInProgress
	case wire.CodeUnknownMember:
		return kafkaUnknownMemberID
	case wire.CodeStaleGeneration:
		return kafkaIllegalGeneration
	case wire.CodeUnknownGroup:
		return kafkaGroupIDNotFound
	case wire.CodeNotLeader, wire.CodeUnavailable, wire.CodeTimeout:
		return kafkaCoordinatorNotAvailable
	}
	return kafkaCode(e)
}

// groupCall sends a Weir group request through the client port's handler and returns its
// answer.
func (k *kafkaListener) groupCall(api wire.API, req any) any {
	body, err := wire.Encode(req)
	if err != nil {
		return &wire.AdminResponse{Err: wire.AsError(err)}
	}
	return k.srv.group(wire.Frame{API: api, Body: body})()
}

// errOf is the error of any Weir response.
func errOf(res any) *wire.Error {
	switch r := res.(type) {
	case *wire.AdminResponse:
		return r.Err
	case *wire.JoinGroupResponse:
		return r.Err
	case *wire.FetchCommitResponse:
		return r.Err
	}
	return nil
}

func (k *kafkaListener) findCoordinator(r *kmsg.FindCoordinatorRequest) *kmsg.FindCoordinatorResponse {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	host, port := splitHostPort(k.advertised())
	keys := r.CoordinatorKeys
	if r.Version < 4 {
		keys = []string{r.CoordinatorKey}
	}
	// Each key is answered once: an answer (an address) is larger than a key, so repeated
	// (empty) keys made a large answer of a small request.
	for _, key := range firstOfEach(keys) {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		if r.CoordinatorType != 0 { // transactions are not served
			c.ErrorCode = kafkaCoordinatorNotAvailable
		} else {
			c.NodeID, c.Host, c.Port = k.brokerID(k.n.raftID), host, port
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if r.Version < 4 && len(resp.Coordinators) == 1 {
		c := resp.Coordinators[0]
		resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.NodeID, c.Host, c.Port
	}
	return resp
}

// joinGroup joins a Kafka member to its Weir group; its client id and the address it connects
// from are the coordinator's to report in DescribeGroups.
func (k *kafkaListener) joinGroup(r *kmsg.JoinGroupRequest, clientID, remote string) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Generation = -1
	if r.ProtocolType != "consumer" || len(r.Protocols) == 0 {
		resp.ErrorCode = kafkaInconsistentProtocol
		return resp
	}
	// The protocol (assignor) named back: an eager one the member offers, so that it revokes
	// everything at each rebalance, as Weir's assignment expects.
	proto := r.Protocols[0]
	for _, p := range r.Protocols {
		if p.Name == "range" || p.Name == "roundrobin" {
			proto = p
			break
		}
	}
	var meta kmsg.ConsumerMemberMetadata
	if err := meta.ReadFrom(proto.Metadata); err != nil || len(meta.Topics) == 0 {
		resp.ErrorCode = kafkaInconsistentProtocol
		return resp
	}
	res := k.groupCall(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: r.Group, MemberID: r.MemberID, Topics: meta.Topics, SessionTimeoutMs: r.SessionTimeoutMillis,
		ClientID: clientID, ClientHost: kafkaClientHost(remote)})
	jr, ok := res.(*wire.JoinGroupResponse)
	if !ok || jr.Err != nil {
		resp.ErrorCode = groupCode(errOf(res))
		if resp.ErrorCode == 0 {
			resp.ErrorCode = -1
		}
		return resp
	}
	k.assigned.mu.Lock()
	if k.assigned.m == nil {
		k.assigned.m = map[string]kafkaAssigned{}
	}
	key := r.Group + "\x00" + jr.MemberID
	k.assigned.m[key] = kafkaAssigned{generation: jr.Generation, parts: jr.Assigned}
	// A newer generation ends every older one: drop what the group's other members were
	// given before it (members that left, expired or crashed stay out of the map).
	for mk, a := range k.assigned.m {
		if a.generation < jr.Generation && strings.HasPrefix(mk, r.Group+"\x00") {
			delete(k.assigned.m, mk)
		}
	}
	k.assigned.mu.Unlock()
	resp.Generation, resp.MemberID, resp.LeaderID = jr.Generation, jr.MemberID, kafkaLeader
	name, typ := proto.Name, "consumer"
	resp.Protocol, resp.ProtocolType = &name, &typ
	return resp
}

func (k *kafkaListener) syncGroup(r *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.ProtocolType, resp.Protocol = r.ProtocolType, r.Protocol
	k.assigned.mu.Lock()
	a, ok := k.assigned.m[r.Group+"\x00"+r.MemberID]
	k.assigned.mu.Unlock()
	switch {
	case !ok:
		resp.ErrorCode = kafkaUnknownMemberID
		return resp
	case a.generation != r.Generation:
		resp.ErrorCode = kafkaIllegalGeneration
		return resp
	}
	resp.MemberAssignment = consumerAssignment(a.parts)
	return resp
}

func (k *kafkaListener) heartbeat(r *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.ErrorCode = groupCode(errOf(k.groupCall(wire.ApiHeartbeat, &wire.HeartbeatRequest{Group: r.Group, MemberID: r.MemberID, Generation: r.Generation})))
	return resp
}

func (k *kafkaListener) leaveGroup(r *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	ids := []string{r.MemberID}
	if r.Version >= 3 {
		// Each member leaves once (a call to the coordinator each), and is answered once.
		ids = ids[:0]
		for _, m := range r.Members {
			ids = append(ids, m.MemberID)
		}
		ids = firstOfEach(ids)
	}
	for _, id := range ids {
		code := groupCode(errOf(k.groupCall(wire.ApiLeaveGroup, &wire.LeaveGroupRequest{Group: r.Group, MemberID: id})))
		k.assigned.mu.Lock()
		delete(k.assigned.m, r.Group+"\x00"+id)
		k.assigned.mu.Unlock()
		if r.Version >= 3 {
			m := kmsg.NewLeaveGroupResponseMember()
			m.MemberID, m.ErrorCode = id, code
			resp.Members = append(resp.Members, m)
		} else {
			resp.ErrorCode = code
		}
	}
	return resp
}

func (k *kafkaListener) offsetCommit(r *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := kmsg.NewPtrOffsetCommitResponse()
	// Generation -1 and no member id: a commit from outside the group (an admin tool, a
	// consumer that assigns itself partitions), which the coordinator takes only while the group
	// has no members, as Kafka does.
	req := &wire.CommitRequest{Group: r.Group, MemberID: r.MemberID, Generation: r.Generation}
	code := int16(0)
	if r.MemberID == "" && r.Generation >= 0 {
		code = kafkaUnknownMemberID // a generation without a member, as Kafka answers it
	}
	// A partition named again is committed once, at the offset named last (as Kafka's map of
	// the request's partitions has it): each offset committed is a record in __offsets and an
	// ownership check at the coordinator.
	//
	// A partition the topic does not have (or a topic that does not exist) is answered
	// UNKNOWN_TOPIC_OR_PARTITION on its own and the request's other partitions are committed, as
	// Kafka does: refusing the whole request would lose the offsets of every other partition of
	// a consumer whose commits name a topic deleted meanwhile (franz-go and the Java consumer
	// commit all their partitions in one request, and retry this error).
	at := map[tp]int{}
	unknown := map[tp]bool{}
	for _, t := range r.Topics {
		tm, known := k.n.Topic(t.Topic)
		for _, p := range t.Partitions {
			if !known || p.Partition < 0 || p.Partition >= tm.Partitions {
				unknown[tp{t.Topic, p.Partition}] = true
				continue
			}
			o := wire.PartitionOffset{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset}
			if p.Metadata != nil {
				o.Metadata = []byte(*p.Metadata)
			}
			if i, ok := at[tp{t.Topic, p.Partition}]; ok {
				req.Offsets[i] = o
				continue
			}
			at[tp{t.Topic, p.Partition}] = len(req.Offsets)
			req.Offsets = append(req.Offsets, o)
		}
	}
	if code == 0 && len(req.Offsets) > 0 {
		code = groupCode(errOf(k.groupCall(wire.ApiCommit, req)))
	}
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			if unknown[tp{t.Topic, p.Partition}] {
				rp.ErrorCode = kafkaUnknownTopic
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (k *kafkaListener) offsetFetch(r *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	// Each partition is asked for and answered once, in the order first named (Kafka answers
	// from a map of them too): an answer's partition takes several times the bytes of a
	// partition in the request.
	topics := dedupOffsetFetchTopics(r.Topics)
	req := &wire.FetchCommitRequest{Group: r.Group}
	for _, t := range topics {
		req.Partitions = append(req.Partitions, wire.TopicPartitions{Topic: t.Topic, Partitions: t.Partitions})
	}
	res := k.groupCall(wire.ApiFetchCommit, req)
	fr, ok := res.(*wire.FetchCommitResponse)
	if !ok || fr.Err != nil {
		resp.ErrorCode = groupCode(errOf(res))
		if resp.ErrorCode == 0 {
			resp.ErrorCode = -1
		}
		return resp
	}
	got := map[string]map[int32]wire.PartitionOffset{}
	for _, o := range fr.Offsets {
		if got[o.Topic] == nil {
			got[o.Topic] = map[int32]wire.PartitionOffset{}
		}
		got[o.Topic][o.Partition] = o
	}
	if topics == nil { // every offset the group committed
		for _, o := range fr.Offsets {
			if len(topics) == 0 || topics[len(topics)-1].Topic != o.Topic {
				topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: o.Topic})
			}
			topics[len(topics)-1].Partitions = append(topics[len(topics)-1].Partitions, o.Partition)
		}
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			if o, ok := got[t.Topic][p]; ok {
				rp.Offset = o.Offset
				if len(o.Metadata) > 0 {
					md := string(o.Metadata)
					rp.Metadata = &md
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// dedupOffsetFetchTopics merges the topics of an OffsetFetch named more than once and drops the
// partitions named again, keeping the order in which each was first named; nil stays nil
// (every committed offset).
func dedupOffsetFetchTopics(topics []kmsg.OffsetFetchRequestTopic) []kmsg.OffsetFetchRequestTopic {
	if topics == nil {
		return nil
	}
	out := []kmsg.OffsetFetchRequestTopic{}
	index := map[string]int{}
	seen := map[tp]bool{}
	for _, t := range topics {
		i, ok := index[t.Topic]
		if !ok {
			i = len(out)
			index[t.Topic] = i
			out = append(out, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: []int32{}})
		}
		for _, p := range t.Partitions {
			if !seen[tp{t.Topic, p}] {
				seen[tp{t.Topic, p}] = true
				out[i].Partitions = append(out[i].Partitions, p)
			}
		}
	}
	return out
}
