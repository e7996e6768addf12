package roll

import (
	"fmt"
	"strings"
	"time"
)

// attentionNames names the kinds of hosts that need attention, for a
// count of those left unlisted.
var attentionNames = map[string]string{
	AttentionLongTurn:   "in a long turn",
	AttentionStuck:      "stuck",
	AttentionOffline:    "offline",
	AttentionOddVersion: "on an odd version",
}

// DescribeAttention says, in words, why a host of s needs attention.
func DescribeAttention(s ServiceSummary, a Attention) string {
	var why string
	switch a.Kind {
	case AttentionOffline:
		why = "offline"
		if !a.Since.IsZero() {
			why += " since " + a.Since.Format(time.RFC3339)
		}
		if a.Expired {
			why += " (expired: longer than member_ttl, not counted in a percentage quorum)"
		}
	case AttentionOddVersion:
		why = fmt.Sprintf("on %s, not the fleet's %s", a.Version, s.Common)
		if s.Staged != "" {
			why = fmt.Sprintf("on %s, neither the fleet's %s nor the staged %s", a.Version, s.Common, s.Staged)
		}
	case AttentionStuck:
		return "stuck: " + a.Why
	case AttentionLongTurn:
		why = fmt.Sprintf("upgrading %s -> %s since %s, longer than %s", a.From, a.Version, a.Since.Format(time.RFC3339), LongTurn(s.Policy))
	default:
		why = a.Kind
	}
	if a.Why != "" {
		why += "; stuck: " + a.Why
	}
	return why
}

// UnlistedText counts, in words, the hosts of s that need attention and
// that the summary left unnamed; empty if none.
func UnlistedText(s ServiceSummary) string {
	var more []string
	for _, kind := range []string{AttentionLongTurn, AttentionStuck, AttentionOffline, AttentionOddVersion} {
		if n := s.Unlisted[kind]; n > 0 {
			more = append(more, fmt.Sprintf("%d %s", n, attentionNames[kind]))
		}
	}
	if len(more) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s more (dcroll status --hosts lists every host)", s.Name, strings.Join(more, ", "))
}
