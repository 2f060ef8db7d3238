package controller

import (
	"strings"
	"testing"
)

// TestTableHashLeavesOutWhatTrafficChanges pins the full check's comparison: counters' values
// (a rule's counter, a named counter) and the elements packets add to the drop-log sets change
// with traffic alone and must not look like tampering; any other change must.
func TestTableHashLeavesOutWhatTrafficChanges(t *testing.T) {
	const listing = `table inet flock-netpol {
	counter rule-A-x/p/in0 {
		comment "x/p ingress rule 0: connections"
		packets 0 bytes 0
	}

	set drop-log-v4 {
		type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service
		size 65536
		flags dynamic,timeout
		timeout 10s
	}

	set peers-B-x/p/in0-v4 {
		type ipv4_addr
		elements = { 10.0.2.7 }
	}

	chain pod-in-C-x/a {
		ct state new counter name "denied-in-D-x/a" drop
		counter packets 0 bytes 0 drop
	}
}
`
	traffic := strings.NewReplacer(
		"		packets 0 bytes 0\n", "		packets 12 bytes 720\n",
		"		timeout 10s\n", "		timeout 10s\n		elements = { 10.1.3.2 . 10.1.1.1 . udp . 40100 . 81 expires 9s880ms,\n			     10.1.3.2 . 10.1.1.1 . udp . 40101 . 81 expires 3s1ms }\n",
		"counter packets 0 bytes 0 drop", "counter packets 3 bytes 180 drop",
	).Replace(listing)
	if traffic == listing {
		t.Fatal("the traffic replacements changed nothing")
	}
	if tableHash(traffic) != tableHash(listing) {
		t.Error("counter values and drop-log elements changed the hash")
	}
	for _, tamper := range []string{
		strings.Replace(listing, "elements = { 10.0.2.7 }", "elements = { 10.0.2.7, 10.0.2.8 }", 1),
		strings.Replace(listing, "ct state new counter name", "accept\n\t\tct state new counter name", 1),
	} {
		if tableHash(tamper) == tableHash(listing) {
			t.Errorf("a change to the table kept the hash:\n%s", tamper)
		}
	}
}
