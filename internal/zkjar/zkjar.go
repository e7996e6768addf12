// Package zkjar finds a ZooKeeper server to run on this machine: java and
// the server's classpath, from Debian's zookeeper package or a jar named by
// the caller. The demo and the test servers both start ZooKeeper this way;
// the package only looks things up and starts nothing.
package zkjar

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
)

// DefaultJar is where Debian's zookeeper package installs the server.
const DefaultJar = "/usr/share/java/zookeeper.jar"

// Env names the environment variable that overrides DefaultJar in tests.
const Env = "ZOOKEEPER_JAR"

// slf4jSimpleJar is Debian's SLF4J backend. Debian's jar depends on the
// SLF4J API but on no logging backend, so without it the server logs
// nothing.
const slf4jSimpleJar = "/usr/share/java/slf4j-simple.jar"

// nettyJars are the parts of Netty that Debian's jar does not list in its
// manifest but that the TLS client port (the Netty server) needs.
var nettyJars = []string{"/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar"}

// ErrNotFound means java or the ZooKeeper jar is missing.
var ErrNotFound = errors.New("zkjar: ZooKeeper is not installed")

// jvmFlags keep the JVM small and quick to start.
var jvmFlags = []string{
	"-Xmx256m",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-Xshare:auto",
	"-XX:-UsePerfData",
	"-Dorg.slf4j.simpleLogger.showDateTime=true",
	"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
}

// JVMFlags returns the JVM's options; heap, if not empty, replaces the
// default maximum heap (java -Xmx takes it, "2g").
func JVMFlags(heap string) []string {
	flags := slices.Clone(jvmFlags)
	if heap != "" {
		flags[0] = "-Xmx" + heap
	}
	return flags
}

// Lookup finds java and the server's classpath: jar if not empty (trusted
// as given: a wrong one fails when the server starts, with the JVM's
// complaint), else the Debian jar, with Debian's SLF4J backend and the Netty
// codecs of its TLS port when they are installed. The error wraps ErrNotFound.
func Lookup(jar string) (java, classpath string, err error) {
	java, err = exec.LookPath("java")
	if err != nil {
		return "", "", fmt.Errorf("%w: no java on PATH", ErrNotFound)
	}
	if jar != "" {
		return java, jar, nil
	}
	if _, err := os.Stat(DefaultJar); err != nil {
		return "", "", fmt.Errorf("%w: no %s", ErrNotFound, DefaultJar)
	}
	classpath = DefaultJar
	for _, extra := range append([]string{slf4jSimpleJar}, nettyJars...) {
		if _, err := os.Stat(extra); err == nil {
			classpath += string(os.PathListSeparator) + extra
		}
	}
	return java, classpath, nil
}
