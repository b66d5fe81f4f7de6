package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// demoLog reads what a `weir demo` node printed: the event numbers its printer sink wrote and
// whether the cluster placed the printer (and the generator) on it.
func demoLog(cn *clusterNode) (events []int, printer, generator bool) {
	b, _ := os.ReadFile(cn.dir + ".log")
	for _, m := range regexp.MustCompile(`(?m)^demo/\d+@\d+ \d+=event-(\d+)$`).FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[1])
		events = append(events, n)
	}
	s := string(b)
	return events, strings.Contains(s, `msg="flow placed here" flow=flow/demo-printer/sink`),
		strings.Contains(s, `msg="flow placed here" flow=flow/demo-gen/source`)
}

// TestClusterFlowsMove runs the demo flow (generator -> topic demo, replication factor 3 ->
// printer sink) in three `weir demo` processes that form a cluster: each defines the flow, and
// the cluster runs the generator and the printer once each. The node running the printer is
// SIGKILLed for good: after --dead-after the printer runs on another node and resumes from its
// group's committed offsets, so that no event is missing from what the printers wrote (some
// may be written twice: the sink delivers at least once).
func TestClusterFlowsMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes := clusterOf(t, 3, "demo", "--rate", "300", "--replicas", "3", "--dead-after", "4s", "--log-level", "info")
	startNodes(t, bin, nodes)
	state := func() (printers []int, generators int, all map[int]bool, printed int) {
		all = map[int]bool{}
		for i, cn := range nodes {
			ev, p, g := demoLog(cn)
			if p {
				printers = append(printers, i)
			}
			if g {
				generators++
			}
			for _, e := range ev {
				all[e] = true
			}
			printed += len(ev)
		}
		return
	}
	waitFor(t, "the printer placed on one node and printing", 60*time.Second, func() (bool, string) {
		printers, gens, all, _ := state()
		return len(printers) == 1 && gens == 1 && len(all) > 500, fmt.Sprintf("printers on %v, %d generators, %d events printed", printers, gens, len(all))
	})
	printers, _, before, _ := state()
	victim := nodes[printers[0]]
	victim.kill()
	killed := time.Now()
	t.Logf("%d events printed by %s; killed it", len(before), victim.name)
	waitFor(t, "the printer moved and printing", 60*time.Second, func() (bool, string) {
		p, _, all, _ := state()
		moved := len(p) == 2 && len(all) > len(before)+1000
		return moved, fmt.Sprintf("printers on %v, %d events printed", p, len(all))
	})
	t.Logf("the printer resumed on another node %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	_, _, all, printed := state()
	top := 0
	for e := range all {
		top = max(top, e)
	}
	// Every event the generator made up to a little before the newest printed is printed (the
	// interceptor drops multiples of 10); the last few may still be on their way.
	missing := 0
	for e := 1; e <= top-600; e++ {
		if e%10 != 0 && !all[e] {
			missing++
			if missing <= 5 {
				t.Errorf("event %d was never printed", e)
			}
		}
	}
	t.Logf("events up to %d printed: %d distinct, %d lines (%d written again after the move), %d missing", top, len(all), printed, printed-len(all), missing)
	if missing > 0 {
		t.Fatalf("%d events missing", missing)
	}
	// From committed offsets, the new printer writes again at most what was not committed yet:
	// starting over would write again everything printed before the kill.
	if again := printed - len(all); len(before) > 200 && again >= len(before) {
		t.Fatalf("%d events written again after the move, of %d printed before it: the printer started over instead of resuming", again, len(before))
	}
}

// TestClusterBoundSourceStays runs the demo flow in three `weir demo --bound` processes: the
// generator is bound to the node that defined it first. That node is SIGKILLed: past
// --dead-after the generator does not move (no other node generates); when the node is started
// again, its generator resumes there from its committed position.
func TestClusterBoundSourceStays(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes := clusterOf(t, 3, "demo", "--rate", "300", "--replicas", "3", "--dead-after", "3s", "--log-level", "info", "--bound")
	startNodes(t, bin, nodes)
	generator := func() []int {
		var on []int
		for i, cn := range nodes {
			if _, _, g := demoLog(cn); g {
				on = append(on, i)
			}
		}
		return on
	}
	printed := func() map[int]bool {
		all := map[int]bool{}
		for _, cn := range nodes {
			ev, _, _ := demoLog(cn)
			for _, e := range ev {
				all[e] = true
			}
		}
		return all
	}
	waitFor(t, "the generator placed and events printed", 60*time.Second, func() (bool, string) {
		g := generator()
		return len(g) == 1 && len(printed()) > 300, fmt.Sprintf("generator on %v, %d printed", g, len(printed()))
	})
	home := nodes[generator()[0]]
	home.kill()
	t.Logf("killed %s, where the bound generator runs", home.name)
	time.Sleep(10 * time.Second) // past --dead-after and a few placement passes
	if g := generator(); len(g) != 1 || nodes[g[0]] != home {
		t.Fatalf("the bound generator moved: now on %v", g)
	}
	before := len(printed())
	home.start(t, bin) // its log is appended to: "flow placed here" appears a second time
	waitFor(t, "the generator resumed on its node", 60*time.Second, func() (bool, string) {
		n := len(printed())
		return n > before+300, fmt.Sprintf("%d events printed (%d before the restart)", n, before)
	})
	b, _ := os.ReadFile(home.dir + ".log")
	if c := strings.Count(string(b), `msg="flow placed here" flow=flow/demo-gen/source`); c < 2 {
		t.Fatalf("the generator was placed on %s %d times, want again after its restart", home.name, c)
	}
	for _, cn := range nodes {
		if cn != home {
			if _, _, g := demoLog(cn); g {
				t.Fatalf("the bound generator ran on %s", cn.name)
			}
		}
	}
	t.Logf("the generator stayed on %s and resumed there (%d events printed)", home.name, len(printed()))
}
