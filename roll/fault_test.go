package roll

import (
	"sync"

	"github.com/go-zookeeper/zk"
)

// faultConn is the test double of the seam to ZooKeeper: it passes every
// request to a real connection, and injects the faults a test asks for.
type faultConn struct {
	conn
	mu sync.Mutex
	// fail, if set, is asked before each request; an error fails the
	// request without sending it.
	fail func(op, path string) error
	// lose, if set, is asked after each request that succeeded; true
	// loses its answer, as a connection loss does: the request took
	// effect, the caller gets zk.ErrConnectionClosed.
	lose func(op, path string) bool
	// deaf, if set, is asked at each watch set ("getw", "childrenw",
	// "existsw"); true loses the watch's event: the watch is set, and the
	// caller gets a channel that never fires.
	deaf func(op, path string) bool
}

// withFaults puts a faultConn between s and its connection.
func withFaults(s *Store) *faultConn {
	f := &faultConn{conn: s.conn}
	s.conn = f
	return f
}

// set installs the fault hooks.
func (f *faultConn) set(fail func(op, path string) error, lose func(op, path string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.lose = fail, lose
}

func (f *faultConn) before(op, path string) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail == nil {
		return nil
	}
	return fail(op, path)
}

func (f *faultConn) after(op, path string, err error) error {
	f.mu.Lock()
	lose := f.lose
	f.mu.Unlock()
	if err == nil && lose != nil && lose(op, path) {
		return zk.ErrConnectionClosed
	}
	return err
}

func (f *faultConn) Get(path string) ([]byte, *zk.Stat, error) {
	if err := f.before("get", path); err != nil {
		return nil, nil, err
	}
	data, stat, err := f.conn.Get(path)
	if err = f.after("get", path, err); err != nil {
		return nil, nil, err
	}
	return data, stat, nil
}

func (f *faultConn) Children(path string) ([]string, *zk.Stat, error) {
	if err := f.before("children", path); err != nil {
		return nil, nil, err
	}
	kids, stat, err := f.conn.Children(path)
	if err = f.after("children", path, err); err != nil {
		return nil, nil, err
	}
	return kids, stat, nil
}

func (f *faultConn) Multi(ops ...any) ([]zk.MultiResponse, error) {
	path := multiPath(ops)
	if err := f.before("multi", path); err != nil {
		return nil, err
	}
	res, err := f.conn.Multi(ops...)
	if err = f.after("multi", path, err); err != nil {
		return nil, err
	}
	return res, nil
}

// multiPath names a transaction by the path of its last operation: the
// one that says what it is for (a turn, a step).
func multiPath(ops []any) string {
	if len(ops) == 0 {
		return ""
	}
	switch r := ops[len(ops)-1].(type) {
	case *zk.CreateRequest:
		return r.Path
	case *zk.DeleteRequest:
		return r.Path
	case *zk.SetDataRequest:
		return r.Path
	case *zk.CheckVersionRequest:
		return r.Path
	}
	return ""
}

func (f *faultConn) Set(path string, data []byte, version int32) (*zk.Stat, error) {
	if err := f.before("set", path); err != nil {
		return nil, err
	}
	stat, err := f.conn.Set(path, data, version)
	if err = f.after("set", path, err); err != nil {
		return nil, err
	}
	return stat, nil
}

func (f *faultConn) Sync(path string) (string, error) {
	if err := f.before("sync", path); err != nil {
		return "", err
	}
	p, err := f.conn.Sync(path)
	return p, f.after("sync", path, err)
}

// setDeaf installs the hook that loses watch events.
func (f *faultConn) setDeaf(deaf func(op, path string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deaf = deaf
}

// heard is ch, or a channel that never fires if the hook loses op's event.
func (f *faultConn) heard(op, path string, ch <-chan zk.Event) <-chan zk.Event {
	f.mu.Lock()
	deaf := f.deaf
	f.mu.Unlock()
	if deaf != nil && ch != nil && deaf(op, path) {
		return make(chan zk.Event)
	}
	return ch
}

func (f *faultConn) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	data, stat, ch, err := f.conn.GetW(path)
	return data, stat, f.heard("getw", path, ch), err
}

func (f *faultConn) ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	kids, stat, ch, err := f.conn.ChildrenW(path)
	return kids, stat, f.heard("childrenw", path, ch), err
}

func (f *faultConn) ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error) {
	ok, stat, ch, err := f.conn.ExistsW(path)
	return ok, stat, f.heard("existsw", path, ch), err
}

func (f *faultConn) Exists(path string) (bool, *zk.Stat, error) {
	if err := f.before("exists", path); err != nil {
		return false, nil, err
	}
	ok, stat, err := f.conn.Exists(path)
	if err = f.after("exists", path, err); err != nil {
		return false, nil, err
	}
	return ok, stat, nil
}
