// Package cluster holds what turns nodes into a cluster: membership (hashicorp/memberlist
// gossip) and placement (which nodes hold which replicas). It knows nothing of actors: the
// node runtime (package actors) feeds it and reads it.
package cluster

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// Member is one live node as gossip knows it.
type Member struct {
	// Name is the gossip name: the node's name and a nonce of this boot ("node-2.5f3a91c0"),
	// since memberlist does not take back a name it saw die.
	Name string `msgpack:"-"`
	// ID is the node's raft id: the same across its restarts (it lives in the data directory).
	ID uint64 `msgpack:"i"`
	// Node is the node's name ("node-2").
	Node string `msgpack:"n"`
	// Remote is the address of the node's actor system (protoactor remote).
	Remote string `msgpack:"r"`
	// Client is the address of the node's client port ("" if none).
	Client string `msgpack:"c,omitempty"`
	// Kafka is the address of the node's Kafka protocol listener ("" if none).
	Kafka string `msgpack:"k,omitempty"`
	// Gossip is the node's gossip address (filled in by Start).
	Gossip string `msgpack:"g,omitempty"`
	// Draining marks a node whose replicas are to move elsewhere (`weir node drain`).
	Draining bool `msgpack:"d,omitempty"`
	// Boot is when this boot of the node started (unix milliseconds).
	Boot int64 `msgpack:"b"`
}

// MembershipConfig configures gossip.
type MembershipConfig struct {
	// Bind is the gossip address, host:port (UDP and TCP); port 0 picks one.
	Bind string
	// Join lists gossip addresses of members to join; empty: start a new cluster.
	Join []string
	// Self is what this node tells the others (Name is filled in).
	Self Member
	// SecretKey, if set (16, 24 or 32 bytes), encrypts gossip (AES-GCM); every member needs the
	// same key.
	SecretKey []byte
	// Fast tunes failure detection for a local network, where a dead node is noticed within
	// about a second (true is the default Weir uses; the zero value keeps memberlist's LAN
	// timing).
	Fast bool
	// OnChange is called (on a goroutine of its own, never concurrently with itself) after a
	// member joins, leaves, dies or changes its metadata; calls may be merged.
	OnChange func()
	Logger   *slog.Logger
}

// Membership is this node's view of the cluster.
type Membership struct {
	ml     *memberlist.Memberlist
	cfg    MembershipConfig
	mu     sync.Mutex
	self   Member
	meta   []byte
	stop   chan struct{}
	notify chan struct{} // a change to report: OnChange runs on notifier, not under memberlist's locks
	once   sync.Once
	wg     sync.WaitGroup
	// alive holds the metadata of the members gossip reports alive, by gossip name, copied in
	// its event callbacks: memberlist's Members returns pointers into state it goes on changing
	// (reading them raced with its updates).
	alive map[string][]byte
	// known holds the gossip addresses worth joining (rejoin): seeds (zero time) and those of
	// every member seen alive, with when.
	known map[string]time.Time
}

func (m *Membership) notifier() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.notify:
		}
		if m.cfg.OnChange != nil {
			m.cfg.OnChange()
		}
	}
}

// Rejoining. memberlist stops talking to a member it declared dead once GossipToTheDeadTime
// has passed, so two sides of a network partition that outlasts it would stay apart for good
// after it heals (a side that had no seeds to join would never try). So every rejoinEvery a
// member tries to join the gossip addresses it knows (its seeds, and every member it saw alive)
// that are not live members now, a few at a time.
const (
	rejoinEvery = time.Second
	rejoinBatch = 3
	// forgetAfter is how long an address not seen alive stays worth trying (seeds stay).
	forgetAfter = 24 * time.Hour
)

// rejoin is the loop described above.
func (m *Membership) rejoin() {
	defer m.wg.Done()
	t := time.NewTicker(rejoinEvery)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		missing := m.missing()
		if len(missing) == 0 {
			continue
		}
		var try []string
		for i := 0; i < min(rejoinBatch, len(missing)); i++ {
			try = append(try, missing[(next+i)%len(missing)])
		}
		next += len(try)
		if _, err := m.ml.Join(try); err != nil {
			m.cfg.Logger.Debug("join", "members", try, "err", err)
		}
	}
}

// missing lists, sorted, the known gossip addresses that no live member has.
func (m *Membership) missing() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := map[string]bool{m.cfg.Bind: true}
	for _, meta := range m.alive {
		if mb, err := decodeMember(meta); err == nil {
			live[mb.Gossip] = true
		}
	}
	var out []string
	for addr, seen := range m.known {
		switch {
		case live[addr]:
		case !seen.IsZero() && time.Since(seen) > forgetAfter:
			delete(m.known, addr)
		default:
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// Start starts gossip and joins the members in cfg.Join: any one live member is enough. If none
// answers, it goes on trying in the background, as it does whenever it sees no other member.
func Start(cfg MembershipConfig) (*Membership, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Self.ID == 0 {
		return nil, errors.New("membership: node id is 0")
	}
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("membership: gossip address %q: bad port", cfg.Bind)
	}
	m := &Membership{cfg: cfg, self: cfg.Self, stop: make(chan struct{}), notify: make(chan struct{}, 1), alive: map[string][]byte{}, known: map[string]time.Time{}}
	for _, s := range cfg.Join {
		m.known[s] = time.Time{}
	}
	m.self.Name = fmt.Sprintf("%s.%08x", cfg.Self.Node, rand.Uint32())
	if m.self.Boot == 0 {
		m.self.Boot = time.Now().UnixMilli()
	}
	c := memberlist.DefaultLANConfig()
	c.Name = m.self.Name
	c.BindAddr, c.BindPort = host, port
	c.AdvertiseAddr, c.AdvertisePort = host, port
	if cfg.Fast {
		// Probe every 200 ms; a member that misses a probe is suspected and declared dead
		// after SuspicionMult probe intervals: about a second on a local network.
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 3
		c.SuspicionMaxTimeoutMult = 2
		c.GossipInterval = 50 * time.Millisecond
		c.PushPullInterval = 5 * time.Second
		c.TCPTimeout = 2 * time.Second
		c.GossipToTheDeadTime = 5 * time.Second
	}
	if len(cfg.SecretKey) > 0 {
		switch len(cfg.SecretKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("membership: gossip key of %d bytes: want 16, 24 or 32", len(cfg.SecretKey))
		}
		c.SecretKey = cfg.SecretKey
	}
	if port == 0 {
		// The metadata names the gossip address: pick the port now.
		ln, err := net.Listen("tcp", cfg.Bind)
		if err != nil {
			return nil, fmt.Errorf("membership: gossip address %q: %w", cfg.Bind, err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		c.BindPort, c.AdvertisePort = port, port
		m.cfg.Bind = net.JoinHostPort(host, strconv.Itoa(port))
	}
	m.self.Gossip = m.cfg.Bind
	if m.meta, err = encodeMember(m.self); err != nil {
		return nil, err
	}
	c.Delegate = m
	c.Events = m
	c.Logger = log.New(slogWriter{cfg.Logger}, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	m.ml = ml
	m.wg.Add(1)
	go m.notifier()
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			cfg.Logger.Warn("join failed; trying again in the background", "members", cfg.Join, "err", err)
		}
	}
	m.wg.Add(1)
	go m.rejoin()
	return m, nil
}

// Addr is the gossip address.
func (m *Membership) Addr() string { return m.cfg.Bind }

// Self is this node's member record.
func (m *Membership) Self() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self
}

// SetDraining changes this node's draining mark and gossips it.
func (m *Membership) SetDraining(d bool) error {
	m.mu.Lock()
	m.self.Draining = d
	b, err := encodeMember(m.self)
	if err == nil {
		m.meta = b
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.ml.UpdateNode(5 * time.Second)
}

// Members lists the live members, one per node id (the newest boot when gossip still knows an
// older one), sorted by id.
func (m *Membership) Members() []Member {
	byID := map[uint64]Member{}
	m.mu.Lock()
	alive := make(map[string][]byte, len(m.alive)+1)
	for name, meta := range m.alive {
		alive[name] = meta
	}
	alive[m.self.Name] = m.meta
	m.mu.Unlock()
	for name, meta := range alive {
		mb, err := decodeMember(meta)
		if err != nil {
			m.cfg.Logger.Warn("member with unreadable metadata", "member", name, "err", err)
			continue
		}
		mb.Name = name
		if old, ok := byID[mb.ID]; !ok || mb.Boot > old.Boot {
			byID[mb.ID] = mb
		}
	}
	out := make([]Member, 0, len(byID))
	for _, mb := range byID {
		out = append(out, mb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Conflicts lists the live members that share a node id with a member of another name: two
// nodes with one raft id (two nodes that each ran alone have id 1) must not be in one cluster.
// Boots of one node share its name and are not conflicts.
func (m *Membership) Conflicts() map[uint64][]string {
	m.mu.Lock()
	alive := make(map[string][]byte, len(m.alive)+1)
	for name, meta := range m.alive {
		alive[name] = meta
	}
	alive[m.self.Name] = m.meta
	m.mu.Unlock()
	names := map[uint64][]string{}
	for _, meta := range alive {
		mb, err := decodeMember(meta)
		if err == nil && !slices.Contains(names[mb.ID], mb.Node) {
			names[mb.ID] = append(names[mb.ID], mb.Node)
		}
	}
	out := map[uint64][]string{}
	for id, ns := range names {
		if len(ns) > 1 {
			slices.Sort(ns)
			out[id] = ns
		}
	}
	return out
}

// Leave tells the others this node is leaving, then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	m.halt()
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops gossip at once: the others notice a dead member.
func (m *Membership) Shutdown() error {
	m.halt()
	return m.ml.Shutdown()
}

func (m *Membership) halt() {
	m.once.Do(func() { close(m.stop) })
	m.wg.Wait()
}

// maxMeta is memberlist's limit on a node's metadata.
const maxMeta = memberlist.MetaMaxSize

func encodeMember(mb Member) ([]byte, error) {
	b, err := msgpack.Marshal(&mb)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	if len(b) > maxMeta {
		return nil, fmt.Errorf("membership: node metadata of %d bytes exceeds %d (addresses too long?)", len(b), maxMeta)
	}
	return b, nil
}

func decodeMember(b []byte) (Member, error) {
	var mb Member
	if len(b) == 0 {
		return mb, errors.New("no metadata")
	}
	if err := msgpack.Unmarshal(b, &mb); err != nil {
		return mb, err
	}
	if mb.ID == 0 {
		return mb, errors.New("node id 0")
	}
	return mb, nil
}

// memberlist.Delegate: only the node's metadata is used.

// NodeMeta implements memberlist.Delegate.
func (m *Membership) NodeMeta(limit int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}

// NotifyMsg implements memberlist.Delegate.
func (m *Membership) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (m *Membership) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (m *Membership) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (m *Membership) MergeRemoteState([]byte, bool) {}

// memberlist.EventDelegate

// NotifyJoin implements memberlist.EventDelegate.
func (m *Membership) NotifyJoin(n *memberlist.Node) { m.changed("join", n) }

// NotifyLeave implements memberlist.EventDelegate.
func (m *Membership) NotifyLeave(n *memberlist.Node) { m.changed("leave", n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (m *Membership) NotifyUpdate(n *memberlist.Node) { m.changed("update", n) }

// changed runs in memberlist's event callbacks, under its lock: n may be read, not kept.
func (m *Membership) changed(ev string, n *memberlist.Node) {
	m.cfg.Logger.Info("member "+ev, "member", n.Name, "addr", n.Address())
	m.mu.Lock()
	if ev == "leave" || n.State != memberlist.StateAlive {
		delete(m.alive, n.Name)
	} else {
		m.alive[n.Name] = append([]byte(nil), n.Meta...)
		if mb, err := decodeMember(n.Meta); err == nil && mb.Gossip != "" && mb.Gossip != m.cfg.Bind {
			if seen, ok := m.known[mb.Gossip]; !ok || !seen.IsZero() {
				m.known[mb.Gossip] = time.Now()
			}
		}
	}
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default: // one is pending already
	}
}

// slogWriter carries memberlist's log lines ("[DEBUG] memberlist: ...") to slog at debug level,
// warnings and errors at their own.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	s := string(p)
	for len(s) > 0 && (s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	switch {
	case len(s) > 5 && s[:5] == "[ERR]":
		w.l.Error(s, "lib", "memberlist")
	case len(s) > 6 && s[:6] == "[WARN]":
		w.l.Warn(s, "lib", "memberlist")
	default:
		w.l.Debug(s, "lib", "memberlist")
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}
