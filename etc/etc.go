// Package etc holds dcroll's default host configuration, embedded in the
// binary so that an agent runs with no config file at all.
package etc

import _ "embed"

// DefaultConfig is the shipped etc/dcroll.toml, the lowest config layer.
//
//go:embed dcroll.toml
var DefaultConfig []byte
