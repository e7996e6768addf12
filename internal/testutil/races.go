package testutil

import "strings"

// RaceReports cuts the race detector's reports out of a log.
func RaceReports(log string) []string {
	const sep = "=================="
	var reports []string
	for {
		i := strings.Index(log, sep+"\nWARNING: DATA RACE")
		if i < 0 {
			return reports
		}
		log = log[i+len(sep):]
		j := strings.Index(log, sep)
		if j < 0 {
			j = len(log)
		}
		reports = append(reports, strings.TrimSpace(log[:j]))
		log = log[j:]
	}
}

// LibraryRace says whether every racing access of a report happened in
// go-zookeeper: the function under each "Read at" or "Write at" line. Its
// Conn.lastZxid is read and written without a lock (upstream:
// go-zookeeper/zk pull request 35, in no release yet), so a reconnect with
// watches set can race; such a report is logged, not failed.
func LibraryRace(report string) bool {
	lines := strings.Split(report, "\n")
	accesses := 0
	for i, l := range lines {
		if !strings.Contains(l, "Read at ") && !strings.Contains(l, "Write at ") && !strings.Contains(l, "read at ") && !strings.Contains(l, "write at ") {
			continue
		}
		accesses++
		if i+1 >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "github.com/go-zookeeper/zk.") {
			return false
		}
	}
	return accesses > 0
}
