// Package benchtb lets a benchmark program use the test helpers (zktest,
// rolltest) outside a test: their temp dirs and cleanups, and a failure
// that unwinds to Catch. Only the methods those helpers call are
// implemented.
package benchtb

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// TB is a testing.TB for a program. Close runs its cleanups.
type TB struct {
	testing.TB
	prefix   string // of its temp dirs
	mu       sync.Mutex
	cleanups []func()
}

// New gives a TB whose temp dirs are named prefix*.
func New(prefix string) *TB { return &TB{prefix: prefix} }

type fatal string

func (m *TB) Helper()                         {}
func (m *TB) Failed() bool                    { return false }
func (m *TB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (m *TB) Fatalf(format string, args ...any) {
	panic(fatal(fmt.Sprintf(format, args...)))
}
func (m *TB) Fatal(args ...any)                { panic(fatal(fmt.Sprint(args...))) }
func (m *TB) Skipf(format string, args ...any) { m.Fatalf(format, args...) }
func (m *TB) Skip(args ...any)                 { m.Fatal(args...) }

func (m *TB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

func (m *TB) TempDir() string {
	dir, err := os.MkdirTemp("", m.prefix)
	if err != nil {
		m.Fatal(err)
	}
	m.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups, the last registered first.
func (m *TB) Close() {
	m.mu.Lock()
	cs := m.cleanups
	m.cleanups = nil
	m.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Catch runs f, turning a TB's failure into its error.
func Catch(f func() error) (err error) {
	defer func() {
		switch p := recover().(type) {
		case nil:
		case fatal:
			err = errors.New(string(p))
		default:
			panic(p)
		}
	}()
	return f()
}
