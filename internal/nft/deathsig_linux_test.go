package nft

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCommandsDieWithTheAgent pins dieWithParent: a command the executor started is killed when
// the process that started it dies, SIGKILL included. The test binary runs itself as that
// process (FLOCK_NFT_DEATHSIG_CHILD), which starts `sleep` and prints its pid.
func TestCommandsDieWithTheAgent(t *testing.T) {
	if os.Getenv("FLOCK_NFT_DEATHSIG_CHILD") != "" {
		ctx := context.Background()
		_, _, _ = osExecutor{}.Run(ctx, []string{"sh", "-c", "echo $$; exec sleep 60"}, nil)
		return
	}
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep command")
	}
	helper := exec.Command(os.Args[0], "-test.run", "^TestCommandsDieWithTheAgent$")
	helper.Env = append(os.Environ(), "FLOCK_NFT_DEATHSIG_CHILD=1")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	// The helper's Run buffers the child's output, so find the child by its parent instead.
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 && time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
			if len(f) > 1 && f[1] == strconv.Itoa(helper.Process.Pid) {
				child = pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if child == 0 {
		_ = helper.Process.Kill()
		t.Fatal("the helper started no command")
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); strings.Contains(string(stat), ") Z ") {
			break // a zombie waiting for init: dead
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(child, syscall.SIGKILL)
			t.Fatal("the command outlived the process that started it")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
