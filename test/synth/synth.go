package synth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Cluster is a generated cluster state, in the form the translator reads it.
type Cluster struct {
	Namespaces []*corev1.Namespace
	// Pods are grouped by namespace, then app; the translator does not care about order.
	Pods     []*corev1.Pod
	Policies []*networkingv1.NetworkPolicy
	// LocalNode is the node under test (Config.LocalNode, defaulted).
	LocalNode string
	// Nodes names every node that pods are scheduled on, LocalNode first.
	Nodes []string
}

// The second PCG seed of each phase's stream. Separate streams keep a phase's draws independent
// of how many draws the phases before it made with other knobs (see the package doc).
const (
	streamNamespaces = 0x6e616d6573706163 // "namespac"
	streamPods       = 0x706f647370656373 // "podspecs"
	streamPlacement  = 0x706c6163656d656e // "placemen"
	streamPolicies   = 0x706f6c6963696573 // "policies"
)

// Percentages of the lifecycle and networking mix (see the package doc).
const (
	hostNetworkAppPercent = 3
	finishedPodPercent    = 3
	dualStackPodPercent   = 25
	sidecarAppPercent     = 15
	canaryAppPercent      = 30
	canaryPodPercent      = 10
)

const namespaceNameLabel = "kubernetes.io/metadata.name"

// namespace is the generator's view of one namespace: what the policy phase needs to write
// selectors that match something.
type namespace struct {
	name, team, env string
	apps            []*app
	pods            []int // indices into generator.pods
}

// app is a set of identical replicas, like the pods of one Deployment.
type app struct {
	name         string
	tier         string
	replicas     int
	version      int // canary pods run version+1
	canary       bool
	hostNetwork  bool
	sidecar      bool
	templateHash string
	labels       []string // extra label pairs (key, value, ...), e.g. k8s-app=kube-dns
	ports        []corev1.ContainerPort
}

// portNames returns the names of the app's container ports, main container first.
func (a *app) portNames() []string {
	var names []string
	for _, p := range a.ports {
		names = append(names, p.Name)
	}
	return names
}

// podInfo is what placement and addressing need to know about a generated pod.
type podInfo struct {
	dualStack bool
	node      int // index into generator.nodes
}

type generator struct {
	cfg        Config
	namespaces []*namespace
	pods       []*corev1.Pod
	info       []podInfo
	nodes      []string
}

// Generate returns the cluster that cfg describes. It panics when cfg cannot be met (see
// Config).
func Generate(cfg Config) Cluster {
	cfg = cfg.withDefaults()
	g := &generator{cfg: cfg}
	g.genNamespaces(newRand(cfg.Seed, streamNamespaces))
	g.genPods(newRand(cfg.Seed, streamPods))
	g.place(newRand(cfg.Seed, streamPlacement))
	g.address()

	c := Cluster{Pods: g.pods, LocalNode: cfg.LocalNode, Nodes: g.nodes}
	for _, ns := range g.namespaces {
		c.Namespaces = append(c.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   ns.name,
			Labels: map[string]string{namespaceNameLabel: ns.name, "team": ns.team, "env": ns.env},
		}})
	}
	c.Policies = newPolicyGen(g, newRand(cfg.Seed, streamPolicies)).generate(cfg.Policies)
	return c
}

func newRand(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// systemNamespace is a namespace every cluster has, with the app that policies point at.
type systemNamespace struct {
	name     string
	app      app
	replicas func(pods int) int
}

// systemNamespaces come first, in this order. Their lead apps are the targets of the DNS egress,
// Prometheus scraping and ingress-controller shapes of policy.
var systemNamespaces = []systemNamespace{
	{
		name: "kube-system",
		app: app{name: "coredns", tier: tierSystem, labels: []string{"k8s-app", "kube-dns"}, ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
		}},
		// CoreDNS is usually scaled with the cluster (dns-autoscaler).
		replicas: func(pods int) int { return 2 + pods/20000 },
	},
	{
		name: "monitoring",
		app: app{name: "prometheus", tier: tierSystem, ports: []corev1.ContainerPort{
			{Name: "web", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}},
		replicas: func(int) int { return 2 },
	},
	{
		name: "ingress-nginx",
		app: app{name: "ingress-nginx-controller", tier: tierSystem, labels: []string{"app.kubernetes.io/name", "ingress-nginx"}, ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
			{Name: "https", ContainerPort: 443, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 10254, Protocol: corev1.ProtocolTCP},
		}},
		replicas: func(pods int) int { return 3 + pods/50000 },
	},
}

// genNamespaces names the namespaces, sizes them and splits each into apps.
func (g *generator) genNamespaces(rng *rand.Rand) {
	n := g.cfg.Namespaces
	taken := make(map[string]bool, n) // lookups only: output order never depends on it
	for i := range n {
		ns := &namespace{team: "platform", env: "prod"}
		if i < len(systemNamespaces) {
			ns.name = systemNamespaces[i].name
		} else {
			ns.team, ns.env = pickOne(rng, teams), envs.pick(rng)
			ns.name = ns.team + "-" + ns.env
			// Team names hold no '-', so a numbered name never equals a plain one.
			for k := 2; taken[ns.name]; k++ {
				ns.name = ns.team + "-" + ns.env + "-" + strconv.Itoa(k)
			}
		}
		taken[ns.name] = true
		g.namespaces = append(g.namespaces, ns)
	}

	// Sizes vary from a quarter to 1.75 times the mean; integer weights keep the split exact
	// and platform-independent. Rounding leftovers go one each to the first namespaces.
	weights := make([]int, n)
	total := 0
	for i := range weights {
		weights[i] = 25 + rng.IntN(151)
		total += weights[i]
	}
	sizes := make([]int, n)
	assigned := 0
	for i, w := range weights {
		sizes[i] = int(int64(g.cfg.Pods) * int64(w) / int64(total))
		assigned += sizes[i]
	}
	for i := 0; assigned < g.cfg.Pods; i = (i + 1) % n {
		sizes[i]++
		assigned++
	}

	for i, ns := range g.namespaces {
		left := sizes[i]
		used := map[string]bool{}
		if i < len(systemNamespaces) && left > 0 {
			sys := systemNamespaces[i]
			a := sys.app // copy; ports are shared read-only and cloned per pod
			a.replicas = min(left, sys.replicas(g.cfg.Pods))
			a.version = 1
			a.templateHash = randomSuffix(rng, 10)
			ns.apps = append(ns.apps, &a)
			used[a.name] = true
			left -= a.replicas
		}
		for left > 0 {
			r := 4 + rng.IntN(33)
			if left-r < 4 {
				r = left // no app of one to three stray pods
			}
			a := newApp(rng, used)
			a.replicas = r
			ns.apps = append(ns.apps, a)
			left -= r
		}
	}
}

// newApp draws a generic app with a name not yet in used.
func newApp(rng *rand.Rand, used map[string]bool) *app {
	a := &app{
		tier:         tiers.pick(rng),
		version:      1 + rng.IntN(5),
		canary:       chance(rng, canaryAppPercent),
		templateHash: randomSuffix(rng, 10),
	}
	base := pickOne(rng, appWords)
	if a.hostNetwork = chance(rng, hostNetworkAppPercent); a.hostNetwork {
		// Node agents: a DaemonSet-like app on the host's network, exposing only metrics.
		base += "-agent"
		a.tier = tierWorker
	}
	a.name = base
	for k := 2; used[a.name]; k++ {
		a.name = base + "-" + strconv.Itoa(k)
	}
	used[a.name] = true

	tcp := func(name string, n int32) corev1.ContainerPort {
		return corev1.ContainerPort{Name: name, ContainerPort: n, Protocol: corev1.ProtocolTCP}
	}
	switch {
	case a.hostNetwork:
		a.ports = append(a.ports, tcp("metrics", 9100))
	case a.tier == tierFrontend:
		a.ports = append(a.ports, tcp("http", 8080))
		if chance(rng, 80) {
			a.ports = append(a.ports, tcp("metrics", 9090))
		}
	case a.tier == tierBackend:
		a.ports = append(a.ports, tcp("http", 8080), tcp("grpc", pickOne(rng, grpcPorts)))
		if chance(rng, 80) {
			a.ports = append(a.ports, tcp("metrics", 9090))
		}
	case a.tier == tierWorker:
		a.ports = append(a.ports, tcp("metrics", 9090))
		if chance(rng, 30) {
			a.ports = append(a.ports, tcp("grpc", pickOne(rng, grpcPorts)))
		}
	case a.tier == tierDB:
		if chance(rng, 70) {
			a.ports = append(a.ports, tcp("postgres", 5432), tcp("metrics", 9187))
		} else {
			a.ports = append(a.ports, tcp("mysql", 3306), tcp("metrics", 9104))
		}
	case a.tier == tierCache:
		a.ports = append(a.ports, tcp("redis", 6379), tcp("metrics", 9121))
	}
	a.sidecar = !a.hostNetwork && chance(rng, sidecarAppPercent)
	return a
}

// genPods creates every pod, without node or addresses.
func (g *generator) genPods(rng *rand.Rand) {
	g.pods = make([]*corev1.Pod, 0, g.cfg.Pods)
	g.info = make([]podInfo, 0, g.cfg.Pods)
	for _, ns := range g.namespaces {
		for _, a := range ns.apps {
			names := make(map[string]bool, a.replicas)
			for range a.replicas {
				name := a.name + "-" + a.templateHash + "-" + randomSuffix(rng, 5)
				for names[name] {
					name = a.name + "-" + a.templateHash + "-" + randomSuffix(rng, 5)
				}
				names[name] = true
				ns.pods = append(ns.pods, len(g.pods))
				g.pods = append(g.pods, newPod(rng, ns, a, name))
				g.info = append(g.info, podInfo{dualStack: !a.hostNetwork && chance(rng, dualStackPodPercent)})
			}
		}
	}
}

var restartAlways = corev1.ContainerRestartPolicyAlways

func newPod(rng *rand.Rand, ns *namespace, a *app, name string) *corev1.Pod {
	version := a.version
	if a.canary && chance(rng, canaryPodPercent) {
		version++
	}
	labels := map[string]string{
		"app":               a.name,
		"tier":              a.tier,
		"version":           "v" + strconv.Itoa(version),
		"pod-template-hash": a.templateHash,
	}
	if version != a.version {
		labels["canary"] = "true" // lets policies tell canaries apart (DoesNotExist)
	}
	for i := 0; i < len(a.labels); i += 2 {
		labels[a.labels[i]] = a.labels[i+1]
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.name, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			HostNetwork: a.hostNetwork,
			Containers: []corev1.Container{{
				Name:  a.name,
				Image: fmt.Sprintf("registry.example.com/%s/%s:v%d", ns.team, a.name, version),
				Ports: slices.Clone(a.ports),
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if a.sidecar {
		// A native sidecar: a restartable init container whose port serves for the pod's life.
		p.Spec.InitContainers = []corev1.Container{{
			Name:          "proxy",
			Image:         "registry.example.com/platform/proxy:1.0",
			RestartPolicy: &restartAlways,
			Ports:         []corev1.ContainerPort{{Name: "envoy-admin", ContainerPort: 15000, Protocol: corev1.ProtocolTCP}},
		}}
	}
	if chance(rng, finishedPodPercent) {
		// Completed one-off runs and evicted replicas linger until garbage-collected.
		if rng.IntN(3) < 2 {
			p.Status.Phase = corev1.PodSucceeded
		} else {
			p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted"
		}
	}
	return p
}

// place schedules exactly LocalPods pods on the local node, drawn from LocalNamespaces random
// namespaces (or more, when those hold too few pods), and spreads every other pod evenly over the
// remaining nodes in random order.
func (g *generator) place(rng *rand.Rand) {
	cfg := g.cfg
	g.nodes = make([]string, cfg.Nodes)
	g.nodes[0] = cfg.LocalNode
	width := len(strconv.Itoa(cfg.Nodes))
	for i := 1; i < cfg.Nodes; i++ {
		g.nodes[i] = fmt.Sprintf("node-%0*d", width, i)
		if g.nodes[i] == cfg.LocalNode {
			g.nodes[i] += "-b" // keep every node name distinct from the local one
		}
	}

	var candidates []int
	chosen := 0
	for _, i := range rng.Perm(len(g.namespaces)) {
		if chosen >= cfg.LocalNamespaces && len(candidates) >= cfg.LocalPods {
			break
		}
		if ns := g.namespaces[i]; len(ns.pods) > 0 {
			candidates = append(candidates, ns.pods...)
			chosen++
		}
	}
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	local := make([]bool, len(g.pods))
	for _, i := range candidates[:cfg.LocalPods] {
		local[i] = true
	}

	var rest []int
	for i := range g.pods {
		if !local[i] {
			rest = append(rest, i)
		}
	}
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	for k, i := range rest {
		g.info[i].node = 1 + k%(cfg.Nodes-1)
	}
	// local pods keep node 0, the zero value
	for i, p := range g.pods {
		p.Spec.NodeName = g.nodes[g.info[i].node]
	}
}

// Address plan. Node n owns the IPv4 pod CIDR 10.0.0.0/8 + n*block (block a power of two of at
// least 256, so a /24 or wider) and the IPv6 pod CIDR fd00:10:0:n::/64; its k-th pod gets offset
// k+2 in both (.0 is the network, .1 the node's bridge). Node addresses, which hostNetwork pods
// report, come from 172.16.0.0/12, outside every pod CIDR. Addresses are never reused, so
// finished pods keep addresses no live pod holds.
var (
	podV4Base  = netip.MustParseAddr("10.0.0.0")
	podV6Base  = netip.MustParseAddr("fd00:10::")
	nodeV4Base = netip.MustParseAddr("172.16.0.0")
)

// address gives every pod its status addresses, following the address plan.
func (g *generator) address() {
	perNode := make([]int, len(g.nodes))
	for _, in := range g.info {
		perNode[in.node]++
	}
	block := uint32(256)
	for int(block) < slices.Max(perNode)+3 {
		block *= 2
	}
	if uint64(len(g.nodes))*uint64(block) > 1<<24 {
		panic(fmt.Sprintf("synth: %d nodes with %d addresses each do not fit in 10.0.0.0/8", len(g.nodes), block))
	}
	if len(g.nodes) > 1<<20-256 {
		panic(fmt.Sprintf("synth: %d node addresses do not fit in 172.16.0.0/12", len(g.nodes)))
	}

	next := make([]uint32, len(g.nodes))
	for i, p := range g.pods {
		n := g.info[i].node
		nodeIP := addV4(nodeV4Base, uint32(n)+10).String()
		p.Status.HostIP = nodeIP
		p.Status.HostIPs = []corev1.HostIP{{IP: nodeIP}}
		if p.Spec.HostNetwork {
			p.Status.PodIP = nodeIP
			p.Status.PodIPs = []corev1.PodIP{{IP: nodeIP}}
			continue
		}
		offset := next[n] + 2
		next[n]++
		v4 := addV4(podV4Base, uint32(n)*block+offset).String()
		p.Status.PodIP = v4
		p.Status.PodIPs = []corev1.PodIP{{IP: v4}}
		if g.info[i].dualStack {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: podV6(uint32(n), offset).String()})
		}
	}
}

// addV4 returns base + off.
func addV4(base netip.Addr, off uint32) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podV6 returns fd00:10:0:<node>::<offset>.
func podV6(node, offset uint32) netip.Addr {
	b := podV6Base.As16()
	b[4], b[5], b[6], b[7] = byte(node>>24), byte(node>>16), byte(node>>8), byte(node)
	b[12], b[13], b[14], b[15] = byte(offset>>24), byte(offset>>16), byte(offset>>8), byte(offset)
	return netip.AddrFrom16(b)
}
