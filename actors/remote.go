package actors

import (
	"fmt"
	"net"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Actors of different nodes talk over protoactor remote (gRPC). Remote carries only protobuf
// messages, so a registered message bound for another node is wrapped into an Envelope by the
// sender middleware below and unwrapped by the receiver middleware of the actor it reaches;
// replies that reach a future (a request from outside an actor) are unwrapped by resultOf.

// Limits of the remote transport. A raft message carries at most 1 MiB of entries (the raft
// config's MaxSizePerMsg) and a fetch response at most MaxFetchBytes (4 MiB by default); a
// forwarded produce request carries one batch of at most storage.MaxBatchSize (64 MiB). protoactor sends up to
// remoteWriterBatch messages in one gRPC message, so the gRPC limit is set well above what a
// batch of them may hold, and a message too large for it is refused by gRPC with an error in
// the log (not dropped silently, which is what gRPC's default 4 MiB limit did).
const (
	remoteWriterBatch = 64
	remoteMaxMsgBytes = 1 << 30
)

// isRemote reports whether pid lives in another actor system.
func isRemote(system *actor.ActorSystem, pid *actor.PID) bool {
	return pid != nil && pid.Address != system.Address() && pid.Address != "nonhost"
}

// wrapRemote is the sender middleware that wraps registered messages bound for another node.
func wrapRemote(next actor.SenderFunc) actor.SenderFunc {
	return func(c actor.SenderContext, target *actor.PID, env *actor.MessageEnvelope) {
		if isRemote(c.ActorSystem(), target) {
			if _, already := env.Message.(*Envelope); !already {
				if w, err := Wrap(env.Message); err == nil {
					env = &actor.MessageEnvelope{Header: env.Header, Message: w, Sender: env.Sender}
				}
			}
		}
		next(c, target, env)
	}
}

// unwrapRemote is the receiver middleware that unwraps envelopes from other nodes. An envelope
// that does not decode (a message type this version does not know) is logged and dropped.
func unwrapRemote(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		if e, ok := env.Message.(*Envelope); ok {
			m, err := Unwrap(e)
			if err != nil {
				c.Logger().Warn("dropped a message from another node", "err", err)
				return
			}
			env = &actor.MessageEnvelope{Header: env.Header, Message: m, Sender: env.Sender}
		}
		next(c, env)
	}
}

// withRemote returns a copy of props with the envelope middlewares (a copy: the caller may
// spawn from the same props again).
func withRemote(props *actor.Props) *actor.Props {
	cp := *props
	cp.Configure(actor.WithSenderMiddleware(wrapRemote), actor.WithReceiverMiddleware(unwrapRemote))
	return &cp
}

// resultOf waits for a future and unwraps an answer that came from another node.
func resultOf(f *actor.Future) (any, error) {
	res, err := f.Result()
	if err != nil {
		return nil, err
	}
	if e, ok := res.(*Envelope); ok {
		return Unwrap(e)
	}
	return res, nil
}

// reenter is ctx.ReenterAfter whose continuation gets answers from other nodes unwrapped.
func reenter(ctx actor.Context, f *actor.Future, cont func(res any, err error)) {
	ctx.ReenterAfter(f, func(res any, err error) {
		if e, ok := res.(*Envelope); ok && err == nil {
			res, err = Unwrap(e)
		}
		cont(res, err)
	})
}

// startRemote starts the node's remote endpoint at addr (host:port; port 0 picks one) and
// returns the address others reach it at.
func startRemote(system *actor.ActorSystem, addr string, tlsCfg *ClusterTLS) (*remote.Remote, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster address %q: bad port", addr)
	}
	serverOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(remoteMaxMsgBytes), grpc.MaxSendMsgSize(remoteMaxMsgBytes)}
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		srv, dial, err := tlsCfg.configs()
		if err != nil {
			return nil, err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(srv)))
		creds = credentials.NewTLS(dial)
	}
	cfg := remote.Configure(host, port,
		remote.WithEndpointWriterBatchSize(remoteWriterBatch),
		remote.WithEndpointWriterQueueSize(1<<16),
		remote.WithServerOptions(serverOpts...),
		remote.WithDialOptions(grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(remoteMaxMsgBytes), grpc.MaxCallSendMsgSize(remoteMaxMsgBytes))),
	)
	r := remote.NewRemote(system, cfg)
	var startErr error
	func() {
		defer func() { // remote.Start panics when it cannot listen
			if p := recover(); p != nil {
				startErr = fmt.Errorf("cluster address %q: %v", addr, p)
			}
		}()
		r.Start()
	}()
	if startErr != nil {
		return nil, startErr
	}
	return r, nil
}

// raftTransport sends a replica's raft messages to its peers' replicas: the actor of the same
// name at each peer's remote address.
type raftTransport struct {
	peers func(id uint64) string // a node's remote address, "" if it is not a live member
}

// Send implements Transport. Each message is marshalled here, before the replica's next
// SaveEntries (which owns the entries' Data), and sent without waiting; a message to a node
// that is not a live member is dropped and reported unreachable.
func (t *raftTransport) Send(ctx actor.Context, group string, msgs []*pb.Message) []uint64 {
	var unreachable []uint64
	for _, m := range msgs {
		addr := t.peers(m.GetTo())
		if addr == "" {
			unreachable = append(unreachable, m.GetTo())
			continue
		}
		data, err := proto.Marshal(m)
		if err != nil {
			ctx.Logger().Error("raft message does not encode", "group", group, "err", err)
			continue
		}
		ctx.Send(actor.NewPID(addr, ctx.Self().Id), &RaftMessage{Group: group, Data: data})
	}
	return unreachable
}
