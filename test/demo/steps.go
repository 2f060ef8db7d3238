//go:build linux

package demo

// The walkthrough, as data. Each step applies policies from examples/ and states, by hand and
// from the NetworkPolicy specification, what every client should reach afterwards. The demo
// measures the same table with real packets and compares.
//
// Tables: one row per client, one column per server port (Columns); each cell is IPv4 then IPv6:
// '.' reachable, 'X' blocked, '-' not probed (a pod to itself, or an address family the pod does
// not have: ledger-1 is IPv4 only).

// Servers are the pods of examples/10-pods.yaml that get a network namespace, with the ports each
// one serves (TCP), and the external host.
var Servers = []Server{
	{Pod: "shop/web-1", Ports: []uint16{8080}},
	{Pod: "shop/web-2", Ports: []uint16{8081}},
	{Pod: "shop/api-1", Ports: []uint16{9000, 9090}},
	{Pod: "payments/ledger-1", Ports: []uint16{9443}},
	{Pod: "monitoring/prometheus-0", Ports: []uint16{9090}},
	{Pod: External, Ports: []uint16{443}},
}

// Steps is the walkthrough.
var Steps = []Step{
	{
		Title: "No policies",
		Note: "Kubernetes' default: no NetworkPolicy selects a pod, so every pod accepts and sends " +
			"anything. The agents have applied a table that lets everything through.",
		Want: `
web-1         --  ..  ..  ..  .-  ..  ..
web-2         ..  --  ..  ..  .-  ..  ..
api-1         ..  ..  --  --  .-  ..  ..
ledger-1      .-  .-  .-  .-  --  .-  .-
prometheus-0  ..  ..  ..  ..  .-  --  ..
ext           ..  ..  ..  ..  .-  ..  --
`,
	},
	{
		Title: "Default deny (examples/20-default-deny.yaml)",
		File:  "20-default-deny.yaml",
		Note: "shop/default-deny-ingress selects every pod of shop: they accept nothing now. " +
			"payments/default-deny isolates ledger-1 both ways: it neither accepts nor sends. " +
			"prometheus-0 and the external host are selected by no policy and stay open; the shop " +
			"pods may still send (their egress is not isolated).",
		Want: `
web-1         --  XX  XX  XX  X-  ..  ..
web-2         XX  --  XX  XX  X-  ..  ..
api-1         XX  XX  --  --  X-  ..  ..
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  XX  XX  XX  XX  X-  --  ..
ext           XX  XX  XX  XX  X-  ..  --
`,
	},
	{
		Title:    "A named port (web-from-anywhere, examples/30-allow.yaml)",
		File:     "30-allow.yaml",
		Policies: []string{"shop/web-from-anywhere"},
		Note: "The web tier accepts its named port \"http\" from anywhere, the external host " +
			"included. The name means 8080 on web-1 but 8081 on web-2: each pod's own container " +
			"port. ledger-1 still cannot send.",
		Want: `
web-1         --  ..  XX  XX  X-  ..  ..
web-2         ..  --  XX  XX  X-  ..  ..
api-1         ..  ..  --  --  X-  ..  ..
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  ..  ..  XX  XX  X-  --  ..
ext           ..  ..  XX  XX  X-  ..  --
`,
	},
	{
		Title:    "Allow from a namespace (api, examples/30-allow.yaml)",
		File:     "30-allow.yaml",
		Policies: []string{"shop/api"},
		Note: "api-1 accepts gRPC (its named port, 9000) from the web pods, and 9090 only from " +
			"prometheus pods in namespaces labelled team=platform (both selectors in one peer: " +
			"AND). The policy also has egress rules, so api-1 is now isolated for egress: it may " +
			"only call gRPC in pci namespaces, HTTPS outside 10.0.0.0/8, and DNS. Its calls to the " +
			"web pods, prometheus-0 and the external host (which is inside 10.0.0.0/8) stop; the " +
			"one to ledger-1 is allowed by api's egress but not by ledger-1's ingress.",
		Want: `
web-1         --  ..  ..  XX  X-  ..  ..
web-2         ..  --  ..  XX  X-  ..  ..
api-1         XX  XX  --  --  X-  XX  XX
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  ..  ..  XX  ..  X-  --  ..
ext           ..  ..  XX  XX  X-  ..  --
`,
	},
	{
		Title:    "Both ends must agree (ledger-from-api, examples/30-allow.yaml)",
		File:     "30-allow.yaml",
		Policies: []string{"payments/ledger-from-api"},
		Note: "ledger-1 now accepts 9443-9445 (endPort) from pods app=api in namespace shop. " +
			"api-1's egress already allowed the call, so api-1 reaches ledger-1: a connection " +
			"needs the client's egress and the server's ingress. ledger-1 has IPv4 only.",
		Want: `
web-1         --  ..  ..  XX  X-  ..  ..
web-2         ..  --  ..  XX  X-  ..  ..
api-1         XX  XX  --  --  .-  XX  XX
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  ..  ..  XX  ..  X-  --  ..
ext           ..  ..  XX  XX  X-  ..  --
`,
	},
	{
		Title: "Egress to a CIDR (examples/demo/40-api-to-partner.yaml)",
		File:  "demo/40-api-to-partner.yaml",
		Note: "A second egress policy for api-1 adds HTTPS to the partner network " +
			"(10.200.0.0/16 and fd00:200::/64, ipBlocks): policies add up, so api-1 now reaches " +
			"the external host on 443, over IPv4 and IPv6, and nothing else changes.",
		Want: `
web-1         --  ..  ..  XX  X-  ..  ..
web-2         ..  --  ..  XX  X-  ..  ..
api-1         XX  XX  --  --  .-  XX  ..
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  ..  ..  XX  ..  X-  --  ..
ext           ..  ..  XX  XX  X-  ..  --
`,
	},
	{
		Title: "Cluster guardrails (ClusterNetworkPolicy, examples/cluster/50-cluster-policies.yaml)",
		File:  "cluster/50-cluster-policies.yaml",
		Note: "The cluster's administrators add ClusterNetworkPolicies. Admin tier: payments-guard " +
			"passes shop's API to the payments team's NetworkPolicies and denies every other pod " +
			"(ledger-1 was closed to them already); monitoring accepts prometheus on every pod's " +
			"\"metrics\" port whatever NetworkPolicy says; no-node-ports denies the kubelet port. " +
			"Baseline tier: prometheus-0, which no NetworkPolicy isolates, now accepts only the " +
			"platform's pods, so web-1 and web-2 lose it; the external host is no pod and keeps it.",
		Want: `
web-1         --  ..  ..  XX  X-  XX  ..
web-2         ..  --  ..  XX  X-  XX  ..
api-1         XX  XX  --  --  .-  XX  ..
ledger-1      X-  X-  X-  X-  --  X-  X-
prometheus-0  ..  ..  XX  ..  X-  --  ..
ext           ..  ..  XX  XX  X-  ..  --
`,
	},
}
