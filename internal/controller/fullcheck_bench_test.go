package controller

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
)

// BenchmarkFullCheck measures one full comparison of the periodic check on the table of a
// 150k-pod / 10k-policy cluster: `nft list table` in a scratch network namespace, then the hash of
// the listing without counter values. Run as root: go test ./internal/controller -run x -bench
// FullCheck -benchtime 3x.
func BenchmarkFullCheck(b *testing.B) {
	ns := netns.NewScratch(b)
	cl := synth.Generate(synth.Sized(150000, 10000))
	rs, _ := translate.Translate(translate.Input{Node: cl.LocalNode, Policies: cl.Policies, Namespaces: cl.Namespaces, Pods: compact.NewPods(cl.Pods)})
	script := render.Render(rs, render.Options{AntiSpoofing: true})
	c, err := nft.New(nft.Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Apply(ctx, script.Text); err != nil {
		b.Fatal(err)
	}
	var size int
	for b.Loop() {
		listing, err := c.ListTable(ctx, "inet", render.DefaultTable)
		if err != nil {
			b.Fatal(err)
		}
		size = len(listing)
		_ = tableHash(listing)
	}
	b.ReportMetric(float64(size), "listing-bytes")
	b.ReportMetric(float64(bytes.Count(script.Text, []byte("\n\t"))), "elements")
}
