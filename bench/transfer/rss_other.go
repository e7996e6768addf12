//go:build !linux

package main

// maxRSSKiB is unknown (-1) off Linux, where ru_maxrss has other units or
// does not exist.
func maxRSSKiB() int64 { return -1 }
