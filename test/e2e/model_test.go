//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
)

// The topology. A pod's id is "<ns>/<pod>" with the logical namespace (x, y, z); its endpoint in
// the bed is "<ns>-<pod>". Addresses are 10.1.<ns>.<pod> and fd00:1::<ns>:<pod> with x, y, z = 1,
// 2, 3 and a, b, c = 1, 2, 3.
var (
	namespaces = []string{"x", "y", "z"}
	podNames   = []string{"a", "b", "c"}
	// placement spreads the pods so that most pairs exist both on one node and across nodes.
	placement = map[string]string{
		"x/a": "node-1", "x/b": "node-2", "x/c": "node-1",
		"y/a": "node-2", "y/b": "node-1", "y/c": "node-2",
		"z/a": "node-1", "z/b": "node-2", "z/c": "node-1",
	}
	extAddrs = []netip.Addr{netip.MustParseAddr("10.200.0.10"), netip.MustParseAddr("fd00:200::10")}
)

const extID = "ext"

// servedPorts are served (TCP and UDP) by every pod and the external host: the upstream 80 and 81,
// and 111-116 for the port-range scenarios.
var servedPorts = []uint16{80, 81, 111, 112, 113, 114, 115, 116}

// podIDs lists every pod id in matrix order.
func podIDs() []string {
	var out []string
	for _, ns := range namespaces {
		for _, p := range podNames {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}

func nsIndex(ns string) int { return strings.Index("xyz", ns) + 1 }
func podIndex(p string) int { return strings.Index("abc", p) + 1 }

// podAddrs returns the IPv4 and IPv6 address of a pod id.
func podAddrs(id string) (v4, v6 netip.Addr) {
	ns, p, _ := strings.Cut(id, "/")
	v4 = netip.MustParseAddr(fmt.Sprintf("10.1.%d.%d", nsIndex(ns), podIndex(p)))
	v6 = netip.MustParseAddr(fmt.Sprintf("fd00:1::%d:%d", nsIndex(ns), podIndex(p)))
	return v4, v6
}

// endpointName is the bed name of a pod id ("x/a" -> "x-a").
func endpointName(id string) string { return strings.Replace(id, "/", "-", 1) }

// idOf is the inverse of endpointName; the external host is extID.
func idOf(e netns.Endpoint) string {
	if e.Name() == extID {
		return extID
	}
	return strings.Replace(e.Name(), "-", "/", 1)
}

// containers are the upstream containers: one per port and protocol, each with its named port
// serve-<port>-<protocol>. SCTP ports are declared although nothing serves SCTP here (the kernel
// of the test machine may lack it), as upstream declares them.
func containers() []corev1.Container {
	var out []corev1.Container
	for _, port := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
			p := strings.ToLower(string(proto))
			out = append(out, corev1.Container{
				Name:  fmt.Sprintf("cont-%d-%s", port, p),
				Ports: []corev1.ContainerPort{objects.ContainerPort(fmt.Sprintf("serve-%d-%s", port, p), proto, port)},
			})
		}
	}
	return out
}

// sel selects endpoints (by id) in reachability expectations.
type sel func(id string) bool

var (
	// all is every endpoint: the nine pods and the external host.
	all sel = func(string) bool { return true }
	// pods is every pod (not the external host).
	pods sel = func(id string) bool { return id != extID }
	// ext is the external host.
	ext sel = func(id string) bool { return id == extID }
)

// inNS selects the pods of a logical namespace.
func inNS(ns string) sel { return func(id string) bool { return strings.HasPrefix(id, ns+"/") } }

// pod selects pods by id.
func pod(ids ...string) sel {
	return func(id string) bool {
		for _, x := range ids {
			if x == id {
				return true
			}
		}
		return false
	}
}

// family limits an expectation to one address family.
type family int

const (
	both family = iota
	v4only
	v6only
)

type expectation struct {
	from, to sel
	fam      family
	ok       bool
}

// reach is an expected reachability table in the upstream style: a default for every pair, then
// expectations applied in order, the last matching one winning. It is a value: every method
// returns a new table.
type reach struct {
	def bool
	exp []expectation
}

// allowed starts from "everything reachable".
func allowed() reach { return reach{def: true} }

func (r reach) expect(from, to sel, fam family, ok bool) reach {
	exp := append(append([]expectation(nil), r.exp...), expectation{from, to, fam, ok})
	return reach{def: r.def, exp: exp}
}

// allow and deny set every pair from -> to (both families).
func (r reach) allow(from, to sel) reach { return r.expect(from, to, both, true) }
func (r reach) deny(from, to sel) reach  { return r.expect(from, to, both, false) }

// denyIn is upstream's ExpectAllIngress(to, false); denyOut is ExpectAllEgress(from, false).
func (r reach) denyIn(to sel) reach    { return r.deny(all, to) }
func (r reach) denyOut(from sel) reach { return r.deny(from, all) }

// allowFam and denyFam set pairs of one family only.
func (r reach) allowFam(fam family, from, to sel) reach { return r.expect(from, to, fam, true) }

func (r reach) verdict(from, to string, v6 bool) bool {
	ok := r.def
	for _, e := range r.exp {
		if (e.fam == v4only && v6) || (e.fam == v6only && !v6) {
			continue
		}
		if e.from(from) && e.to(to) {
			ok = e.ok
		}
	}
	return ok
}
