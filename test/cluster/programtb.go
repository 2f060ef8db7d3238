package cluster

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// ProgramTB is a testing.TB for main programs (the demo), so that they can use this package and
// test/netns, which report setup problems through a testing.TB.
//
// Log lines go to Out only when Verbose is set; errors always do. Fatal, FailNow and the Skip
// methods end the function passed to Run (call them from that goroutine only, as with a test);
// Run then runs the cleanups, last registered first, and reports whether everything went well.
// Methods of testing.TB that it does not implement panic.
type ProgramTB struct {
	testing.TB // nil: only the methods below are implemented

	name    string
	Out     io.Writer
	Verbose bool

	mu       sync.Mutex
	failed   bool
	skipped  bool
	cleanups []func()
}

// NewProgramTB returns a ProgramTB writing to out.
func NewProgramTB(name string, out io.Writer, verbose bool) *ProgramTB {
	return &ProgramTB{name: name, Out: out, Verbose: verbose}
}

// endRun is what Fatal and Skip panic with; Run recovers it.
type endRun struct{}

// Run calls fn, then the cleanups. It returns false when fn failed, skipped or panicked (a panic
// other than Fatal's is re-raised after the cleanups).
func (p *ProgramTB) Run(fn func(testing.TB)) (ok bool) {
	var crash any
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, end := r.(endRun); !end {
					crash = r
				}
			}
		}()
		fn(p)
	}()
	p.runCleanups()
	if crash != nil {
		panic(crash)
	}
	return !p.Failed() && !p.Skipped()
}

func (p *ProgramTB) runCleanups() {
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, end := r.(endRun); !end {
						p.Errorf("cleanup panicked: %v", r)
					}
				}
			}()
			f()
		}()
	}
}

func (p *ProgramTB) print(prefix string, args ...any) {
	s := fmt.Sprintln(args...)
	s = s[:len(s)-1]
	p.printLine(prefix + s)
}

func (p *ProgramTB) printLine(s string) {
	out := p.Out
	if out == nil {
		out = os.Stderr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(out, strings.TrimRight(s, "\n"))
}

func (p *ProgramTB) Name() string { return p.name }
func (p *ProgramTB) Helper()      {}

func (p *ProgramTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *ProgramTB) Log(args ...any) {
	if p.Verbose {
		p.print("", args...)
	}
}

func (p *ProgramTB) Logf(format string, args ...any) {
	if p.Verbose {
		p.printLine(fmt.Sprintf(format, args...))
	}
}

func (p *ProgramTB) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
}

func (p *ProgramTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *ProgramTB) Skipped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

func (p *ProgramTB) Error(args ...any) {
	p.print("error: ", args...)
	p.Fail()
}

func (p *ProgramTB) Errorf(format string, args ...any) {
	p.printLine("error: " + fmt.Sprintf(format, args...))
	p.Fail()
}

func (p *ProgramTB) FailNow() {
	p.Fail()
	panic(endRun{})
}

func (p *ProgramTB) Fatal(args ...any) {
	p.print("error: ", args...)
	p.FailNow()
}

func (p *ProgramTB) Fatalf(format string, args ...any) {
	p.printLine("error: " + fmt.Sprintf(format, args...))
	p.FailNow()
}

// SkipNow and the Skip methods end the run: a program cannot go on without what was missing.
func (p *ProgramTB) SkipNow() {
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	panic(endRun{})
}

func (p *ProgramTB) Skip(args ...any) {
	p.print("cannot run: ", args...)
	p.SkipNow()
}

func (p *ProgramTB) Skipf(format string, args ...any) {
	p.printLine("cannot run: " + fmt.Sprintf(format, args...))
	p.SkipNow()
}

// TempDir returns a new directory removed at the end of Run.
func (p *ProgramTB) TempDir() string {
	d, err := os.MkdirTemp("", strings.ReplaceAll(p.name, "/", "-")+"-")
	if err != nil {
		p.Fatalf("TempDir: %v", err)
	}
	p.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

var _ testing.TB = (*ProgramTB)(nil)
