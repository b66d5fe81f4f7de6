package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/client"
)

// TestKafkaAdminCluster: the admin APIs answer the same through each of three nodes, though the
// group coordinators run on one (the node leading __offsets): ListGroups and DescribeGroups
// show a kgo member of a group with its client id and assignment, DescribeCluster lists the
// three brokers, DescribeTopicPartitions a topic's three replicas, and DescribeConfigs each
// broker's own configs and the topic's min.insync.replicas of 2 (a majority of 3).
func TestKafkaAdminCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes, kafka := kafkaCluster(t, bin)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "ac", 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cons, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafka, ",")...), kgo.ConsumerGroup("cg"), kgo.ConsumeTopics("ac"),
		kgo.Balancers(kgo.RangeBalancer()), kgo.ClientID("cluster-member"), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	go func() { // polls until closed, so that the member joins
		for ctx.Err() == nil {
			if cons.PollFetches(ctx).IsClientClosed() {
				return
			}
		}
	}()
	adm, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafka, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, adm)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("Metadata lists %d brokers, want 3", len(md.Brokers))
	}
	var ids []int32
	for _, b := range md.Brokers {
		ids = append(ids, b.NodeID)
	}
	slices.Sort(ids)

	for _, id := range ids {
		b := adm.Broker(int(id))
		// The member is Stable in cg, seen from this broker.
		var member kmsg.DescribeGroupsResponseGroupMember
		waitFor(t, "group cg Stable through broker "+strconv.Itoa(int(id)), 60*time.Second, func() (bool, string) {
			lg := kmsg.NewPtrListGroupsRequest()
			lr, err := lg.RequestWith(ctx, b)
			if err != nil {
				return false, err.Error()
			}
			listed := false
			for _, g := range lr.Groups {
				listed = listed || g.Group == "cg" && g.GroupState == "Stable" && g.GroupType == "classic"
			}
			dg := kmsg.NewPtrDescribeGroupsRequest()
			dg.Groups = []string{"cg"}
			dr, err := dg.RequestWith(ctx, b)
			if err != nil {
				return false, err.Error()
			}
			if len(dr.Groups) != 1 || dr.Groups[0].State != "Stable" || len(dr.Groups[0].Members) != 1 || !listed {
				return false, "ListGroups " + strconv.Itoa(len(lr.Groups)) + " groups, DescribeGroups " + strconv.Itoa(len(dr.Groups))
			}
			member = dr.Groups[0].Members[0]
			return true, ""
		})
		var a kmsg.ConsumerMemberAssignment
		if err := a.ReadFrom(member.MemberAssignment); err != nil || len(a.Topics) != 1 || !slices.Equal(a.Topics[0].Partitions, []int32{0, 1, 2}) {
			t.Errorf("broker %d: the member's assignment %+v (%v), want ac 0, 1, 2", id, a, err)
		}
		if member.ClientID != "cluster-member" || member.ClientHost != "/127.0.0.1" {
			t.Errorf("broker %d: member %+v, want client id cluster-member, host /127.0.0.1", id, member)
		}

		dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var dcIDs []int32
		for _, db := range dc.Brokers {
			dcIDs = append(dcIDs, db.NodeID)
		}
		slices.Sort(dcIDs)
		if dc.ErrorCode != 0 || !slices.Equal(dcIDs, ids) {
			t.Errorf("broker %d: DescribeCluster lists %v (error %d), want %v", id, dcIDs, dc.ErrorCode, ids)
		}

		dtp := kmsg.NewPtrDescribeTopicPartitionsRequest()
		dtp.Topics = []kmsg.DescribeTopicPartitionsRequestTopic{{Topic: "ac"}}
		tr, err := dtp.RequestWith(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Topics) != 1 || len(tr.Topics[0].Partitions) != 3 {
			t.Fatalf("broker %d: DescribeTopicPartitions of ac: %+v", id, tr.Topics)
		}
		for _, p := range tr.Topics[0].Partitions {
			replicas := slices.Sorted(slices.Values(p.Replicas))
			if !slices.Equal(replicas, ids) || !slices.Contains(ids, p.LeaderID) {
				t.Errorf("broker %d: ac/%d: leader %d, replicas %v; want one of %v and all of them", id, p.Partition, p.LeaderID, p.Replicas, ids)
			}
		}

		dcfg := kmsg.NewPtrDescribeConfigsRequest()
		dcfg.Resources = []kmsg.DescribeConfigsRequestResource{
			{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: strconv.Itoa(int(id)), ConfigNames: []string{"broker.id"}},
			{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "ac", ConfigNames: []string{"min.insync.replicas"}},
		}
		cr, err := dcfg.RequestWith(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range cr.Resources {
			for _, cfg := range r.Configs {
				if r.ErrorCode == 0 && cfg.Value != nil {
					got[cfg.Name] = *cfg.Value
				}
			}
		}
		if got["broker.id"] != strconv.Itoa(int(id)) || got["min.insync.replicas"] != "2" {
			t.Errorf("broker %d: DescribeConfigs %v, want broker.id %d and ac's min.insync.replicas 2", id, got, id)
		}
	}
}
