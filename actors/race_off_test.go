//go:build !race

package actors

// raceEnabled: the race detector makes some allocations of its own, which allocation tests allow.
const raceEnabled = false
