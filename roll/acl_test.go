package roll

import (
	"testing"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
)

// With roles, the operator may do anything anywhere, and the agent may not
// write a manifest, a policy or the deploy queue's data, nor change an ACL.
func TestRolesACLByPath(t *testing.T) {
	p, err := newACLPolicy(config.ZooKeeper{Root: "/dc", ACL: "roles", OperatorID: "x509:CN=op", AgentID: "x509:CN=agent"}, "")
	if err != nil {
		t.Fatal(err)
	}
	tree := Tree{Root: "/dc"}
	for _, tc := range []struct {
		path  string
		agent int32
	}{
		{"/dc", zk.PermRead},
		{tree.Services(), zk.PermRead},
		{tree.Service("web"), zk.PermRead},
		{"/dc/staging", zk.PermRead},
		{tree.Staging("web"), zk.PermRead | zk.PermCreate},
		{tree.readyDir("web"), zk.PermRead | zk.PermWrite | zk.PermCreate | zk.PermDelete},
		{tree.Deploy(), zk.PermRead | zk.PermDelete},
		{tree.step("step-0000000001"), zk.PermRead},
		{tree.Roll("web"), zk.PermRead | zk.PermWrite},
		{tree.advancerPath(), zk.PermRead | zk.PermWrite},
		{tree.Turn("web", "h1"), zk.PermRead | zk.PermWrite},
		{tree.Host("h1"), zk.PermRead | zk.PermWrite},
		{tree.Hosts(), zk.PermRead | zk.PermCreate | zk.PermDelete},
		{tree.Current("web", "h1"), zk.PermRead | zk.PermWrite},
		{"/dc/unknown/x", zk.PermRead},
		{"/other", zk.PermRead},
	} {
		acl := p.of(tc.path)
		if len(acl) != 2 || acl[0] != (zk.ACL{Perms: zk.PermAll, Scheme: "x509", ID: "CN=op"}) || acl[1] != (zk.ACL{Perms: tc.agent, Scheme: "x509", ID: "CN=agent"}) {
			t.Errorf("%s: %s, want the operator all and the agent %s", tc.path, formatACL(acl), formatACL([]zk.ACL{{Perms: tc.agent}}))
		}
	}
	open, _ := newACLPolicy(config.ZooKeeper{Root: "/dc", ACL: "open"}, "")
	if got := formatACL(open.of("/dc/staging/web")); got != "world:anyone:cdrwa" {
		t.Errorf("open: %s", got)
	}
}
