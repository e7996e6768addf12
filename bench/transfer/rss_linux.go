package main

import "syscall"

// maxRSSKiB is this process's peak resident set size in KiB; Linux reports
// ru_maxrss in KiB.
func maxRSSKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Maxrss
}
