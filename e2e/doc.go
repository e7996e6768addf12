// Package e2e attacks a small data center built on this machine and checks
// that dcroll keeps its promises: hosts are Linux network namespaces on a
// bridge, with addresses in 198.18.0.0/24; a 3-node ZooKeeper ensemble runs
// in three more; every host runs a dcroll agent managing two services. A
// nemesis kills agents, cuts hosts off the network, stops agents, kills the
// ZooKeeper leader or two servers, slows transfers and stages releases that
// fail, on randomized schedules derived from a printed seed. A checker
// replays what ZooKeeper and the services themselves said and reports every
// moment an invariant of docs/PROTOCOL.md did not hold.
//
// It needs root; elsewhere its tests skip.
package e2e
