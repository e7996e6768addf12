package testutil

import "testing"

func TestRaceReportsAreToldApart(t *testing.T) {
	log := `2026-11-27T14:57:41.726Z [WARN]  dcroll: something
==================
WARNING: DATA RACE
Write at 0x00c00014c900 by goroutine 1328:
  github.com/go-zookeeper/zk.(*Conn).recvLoop()
      /root/go/pkg/mod/github.com/go-zookeeper/zk@v1.0.4/conn.go:849 +0x68c

Previous read at 0x00c00014c900 by goroutine 1290:
  github.com/go-zookeeper/zk.(*Conn).sendSetWatches()
      /root/go/pkg/mod/github.com/go-zookeeper/zk@v1.0.4/conn.go:620 +0x4f2

Goroutine 1328 (running) created at:
  github.com/dcroll/dcroll/roll.Dial()
==================
more log
==================
WARNING: DATA RACE
Read at 0x00c000123456 by goroutine 7:
  github.com/dcroll/dcroll/agent.(*Agent).publish()
      /work/agent/agent.go:100 +0x1

Previous write at 0x00c000123456 by goroutine 8:
  github.com/dcroll/dcroll/agent.(*Agent).healthLoop()
==================
`
	reports := RaceReports(log)
	if len(reports) != 2 {
		t.Fatalf("found %d reports, want 2: %q", len(reports), reports)
	}
	if !LibraryRace(reports[0]) {
		t.Errorf("the go-zookeeper race was taken for dcroll's:\n%s", reports[0])
	}
	if LibraryRace(reports[1]) {
		t.Errorf("dcroll's race was taken for the library's:\n%s", reports[1])
	}
}
