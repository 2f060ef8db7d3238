//go:build linux

package e2e

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/test/objects"
)

// The ClusterNetworkPolicy conformance scenarios: the tests of sigs.k8s.io/network-policy-api
// v0.3.0 (conformance/tests/*.go, manifests in conformance/base/), as data, plus a few of our own.
// Each scenario's `upstream` names the test it ports by ShortName and description; its steps are
// the policy states the upstream subtests probe, in their order (upstream patches accumulate, so
// do ours), and each step checks the whole matrix (every pod, both centaurs, the external host;
// IPv4 and IPv6) on the ports that tell the rules apart, where upstream probes a few pairs.
// Expectations are written from the API's specification (apis/v1alpha2): Admin tier by ascending
// priority, rules in order, Accept and Deny final, Pass on to NetworkPolicy; then NetworkPolicy;
// then the Baseline tier for the traffic no NetworkPolicy isolates, Pass there meaning the default;
// then allow. An egress Accept still needs the destination's ingress. hostNetwork pods (the
// centaurs) are never subjects or peers, and the external host is no pod: only `networks` (and for
// the centaurs `nodes`) peers match them. A pod's traffic to its own node is judged by its
// ClusterNetworkPolicy egress tiers only, NetworkPolicy always allowing it; flows that no hook of
// ours sees are always reachable (unpoliced, cnp_model_test.go).
//
// SCTP: the test kernel has no SCTP sockets, but conntrack and nftables handle SCTP, so SCTP is
// probed with real packets (an INIT answered by an INIT ACK over raw sockets, test/netns/sctp.go)
// on ports 9003 and 9005, as upstream probes it. Where an SCTP-only rule decides, TCP on the same
// port is probed too, to show the rule does not reach it.
//
// Porting table (upstream ShortName: what runs here):
//
//	CNPAdminTierIngressTCP                ported, 4 steps (declared; swap 0,1; swap 0,2; swap 3,4)
//	CNPAdminTierIngressUDP                ported, 4 steps
//	CNPAdminTierIngressSCTP               ported, 4 steps, SCTP probed (plus TCP 9003)
//	CNPAdminTierEgressTCP                 ported, 4 steps
//	CNPAdminTierEgressUDP                 ported, 4 steps
//	CNPAdminTierEgressSCTP                ported, 4 steps, SCTP probed (plus TCP 9003)
//	CNPAdminTierGress                     ported, 4 steps, TCP, UDP and SCTP
//	CNPAdminTierEgressInlineCIDRPeers     ported, 4 steps; the inserted networks rule lists both
//	                                      addresses of each pod (dual stack) where upstream lists the
//	                                      pod's single-family status.podIP
//	CNPAdminTierPodSelector               ported, 4 steps (label changes combined pairwise)
//	CNPAdminTierPortRange                 ported, 1 step, ports inside and outside each range
//	CNPAdminTierPriorityField             ported, 2 steps
//	CNPAdminTierSamePriority              ported, 1 step
//	CNPAdminTierIntegration               ported, 4 steps
//	CNPAdminTierEgressNamedPort           ported (experimental: destinationNamedPort), 1 step
//	CNPAdminTierIngressNamedPort          ported (experimental: destinationNamedPort), 1 step
//	CNPAdminTierEgressNodePeers           ported (experimental: nodes), 1 step; the centaurs'
//	                                      HostNetworkPorts are ports 80 and 8080 (TCP), 53 and 5353
//	                                      (UDP), 9003 (SCTP)
//	CNPBaselineTierIngressTCP             ported, 2 steps (declared; swap 0,1)
//	CNPBaselineTierIngressUDP             ported, 2 steps
//	CNPBaselineTierIngressSCTP            ported, 2 steps, SCTP probed (plus TCP 9003)
//	CNPBaselineTierEgressTCP              ported, 2 steps
//	CNPBaselineTierEgressUDP              ported, 2 steps
//	CNPBaselineTierEgressSCTP             ported, 2 steps, SCTP probed (plus TCP 9003)
//	CNPBaselineTierGress                  ported, 2 steps, TCP, UDP and SCTP
//	CNPBaselineTierEgressInlineCIDRPeers  ported, 4 steps (dual-stack networks rule, as above)
//	CNPBaselineTierPodSelector            ported, 4 steps
//	CNPBaselineTierPortRange              ported, 1 step
//	CNPBaselineTierSamePriority           ported, 1 step
//	CNPBaselineTierEgressNamedPort        ported (experimental: destinationNamedPort), 1 step
//	CNPBaselineTierIngressNamedPort       ported (experimental: destinationNamedPort), 1 step
//	CNPBaselineTierEgressNodePeers        ported (experimental: nodes), 1 step, as above
//
// Every upstream test runs here; none is partial or left out. The first two scenarios check the
// harness itself (everything open without policies; NetworkPolicy, SCTP included, on this
// topology), the last ones are ours, for what the API specifies and upstream does not test:
// EgressAcceptStillNeedsIngress, BaselineOnlyWhereNetworkPolicyDoesNotIsolate,
// BaselinePassIsTheDefault, EqualPrioritiesByName (the API leaves the order within one priority to
// the implementation; ours is by name), HostNetworkPodsAreNeitherSubjectsNorPeers,
// NodePeersSelectNodes, OwnNodeJudgedByTiersOnly, and DomainNamesAcceptMatchesNothing (upstream has
// no domainNames test; we do not support them, and an Accept with domainNames matches nothing).
var cnpScenarios = []cnpScenario{
	{
		name:     "NoPolicies",
		upstream: "ours: the harness on the conformance topology, every port and protocol open",
		steps: []cnpStep{{
			what: "no policy: everything is reachable",
			checks: checks(tcp(53, allowed()), tcp(80, allowed()), tcp(5353, allowed()), tcp(8080, allowed()),
				tcp(9003, allowed()), tcp(9005, allowed()), udp(53, allowed()), udp(80, allowed()),
				udp(5353, allowed()), udp(8080, allowed()), udp(9003, allowed()), sctp(80, allowed()),
				sctp(9003, allowed()), sctp(9005, allowed())),
		}},
	},
	{
		name:     "NetworkPolicyOnConformanceTopology",
		upstream: "ours: the harness with NetworkPolicy (no ClusterNetworkPolicy), SCTP included",
		steps: []cnpStep{{
			what: "gryffindor admits slytherin on TCP 80 only; ravenclaw admits gryffindor on SCTP 9003 only",
			do: do(apply(
				objects.Policy(nsName("gryffindor")+"/from-slytherin-tcp-80", objects.IsolateIngress(objects.Ingress(
					objects.From(objects.NamespacesLabelled(houseLabel, "slytherin")), objects.Ports(objects.Port(TCP, 80))))),
				objects.Policy(nsName("ravenclaw")+"/from-gryffindor-sctp-9003", objects.IsolateIngress(objects.Ingress(
					objects.From(objects.NamespacesLabelled(houseLabel, "gryffindor")), objects.Ports(objects.Port(SCTP, 9003))))),
			)),
			checks: checks(
				tcp(80, allowed().denyIn(gryffindor).allow(slytherin, gryffindor).denyIn(ravenclaw)),
				udp(80, allowed().denyIn(gryffindor).denyIn(ravenclaw)),
				sctp(9003, allowed().denyIn(gryffindor).denyIn(ravenclaw).allow(gryffindor, ravenclaw)),
				sctp(9005, allowed().denyIn(gryffindor).denyIn(ravenclaw)),
				tcp(9003, allowed().denyIn(gryffindor).denyIn(ravenclaw))),
		}},
	},

	// The Admin tier.

	{
		name: "CNPAdminTierIngressTCP",
		upstream: "CNPAdminTierIngressTCP: Tests support for ingress traffic (TCP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "ingress-tcp as declared: ravenclaw accepted, slytherin denied on TCP 80, hufflepuff accepted on TCP 80 only",
				do:   do(apply(houseRulesCNP("ingress-tcp", admin, 3, "gryffindor", false, "ravenclaw", tcpP(80), "hufflepuff", tcpP(80)))),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapIngress("ingress-tcp", 0, 1)),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor).deny(ravenclaw, gryffindor)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor).deny(ravenclaw, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor).deny(ravenclaw, gryffindor))),
			},
			{
				what: "Pass first for ravenclaw: on to NetworkPolicy (none), then the default",
				do:   do(swapIngress("ingress-tcp", 0, 2)),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Pass before Deny for slytherin on TCP 80",
				do:   do(swapIngress("ingress-tcp", 3, 4)),
				checks: checks(
					tcp(80, allowed()),
					tcp(8080, allowed().deny(hufflepuff, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor))),
			},
		},
	},
	{
		name: "CNPAdminTierIngressUDP",
		upstream: "CNPAdminTierIngressUDP: Tests support for ingress traffic (UDP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "ingress-udp as declared: ravenclaw accepted, slytherin denied on UDP 5353, gryffindor accepted on UDP 53 only",
				do:   do(apply(houseRulesCNP("ingress-udp", admin, 4, "hufflepuff", false, "ravenclaw", udpP(5353), "gryffindor", udpP(53)))),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapIngress("ingress-udp", 0, 1)),
				checks: checks(
					udp(53, allowed().deny(ravenclaw, hufflepuff)),
					udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff).deny(ravenclaw, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff).deny(ravenclaw, hufflepuff))),
			},
			{
				what: "Pass first for ravenclaw",
				do:   do(swapIngress("ingress-udp", 0, 2)),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Pass before Deny for slytherin on UDP 5353",
				do:   do(swapIngress("ingress-udp", 3, 4)),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(gryffindor, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff))),
			},
		},
	},
	{
		name: "CNPAdminTierIngressSCTP",
		upstream: "CNPAdminTierIngressSCTP: Tests support for ingress traffic (SCTP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "ingress-sctp as declared: gryffindor accepted, slytherin denied on SCTP 9003, hufflepuff accepted on SCTP 9003 only",
				do:   do(apply(houseRulesCNP("ingress-sctp", admin, 5, "ravenclaw", false, "gryffindor", sctp9003, "hufflepuff", sctp9003))),
				checks: checks(
					sctp(9003, allowed().deny(slytherin, ravenclaw)),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw)),
					// SCTP rules leave TCP alone: slytherin's SCTP deny does not reach TCP 9003,
					// hufflepuff's SCTP accept does not admit it (the rule after denies).
					tcp(9003, allowed().deny(hufflepuff, ravenclaw))),
			},
			{
				what: "Deny before Accept for gryffindor",
				do:   do(swapIngress("ingress-sctp", 0, 1)),
				checks: checks(
					sctp(9003, allowed().deny(slytherin, ravenclaw).deny(gryffindor, ravenclaw)),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw).deny(gryffindor, ravenclaw)),
					tcp(9003, allowed().deny(hufflepuff, ravenclaw).deny(gryffindor, ravenclaw))),
			},
			{
				what: "Pass first for gryffindor",
				do:   do(swapIngress("ingress-sctp", 0, 2)),
				checks: checks(
					sctp(9003, allowed().deny(slytherin, ravenclaw)),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw)),
					tcp(9003, allowed().deny(hufflepuff, ravenclaw))),
			},
			{
				what: "Pass before Deny for slytherin on SCTP 9003",
				do:   do(swapIngress("ingress-sctp", 3, 4)),
				checks: checks(
					sctp(9003, allowed()),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw)),
					tcp(9003, allowed().deny(hufflepuff, ravenclaw))),
			},
		},
	},
	{
		name: "CNPAdminTierEgressTCP",
		upstream: "CNPAdminTierEgressTCP: Tests support for egress traffic (TCP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "egress-tcp as declared: to ravenclaw accepted, to slytherin denied on TCP 80, to hufflepuff accepted on TCP 8080 only",
				do:   do(apply(houseRulesCNP("egress-tcp", admin, 6, "gryffindor", true, "ravenclaw", tcpP(80), "hufflepuff", tcpP(8080)))),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, slytherin).deny(gryffindor, hufflepuff)),
					tcp(8080, allowed()),
					udp(8080, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapEgress("egress-tcp", 0, 1)),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, slytherin).deny(gryffindor, hufflepuff).deny(gryffindor, ravenclaw)),
					tcp(8080, allowed().deny(gryffindor, ravenclaw)),
					udp(8080, allowed().deny(gryffindor, hufflepuff).deny(gryffindor, ravenclaw))),
			},
			{
				what: "Pass first for ravenclaw",
				do:   do(swapEgress("egress-tcp", 0, 2)),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, slytherin).deny(gryffindor, hufflepuff)),
					tcp(8080, allowed()),
					udp(8080, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Pass before Deny for slytherin on TCP 80",
				do:   do(swapEgress("egress-tcp", 3, 4)),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, hufflepuff)),
					tcp(8080, allowed()),
					udp(8080, allowed().deny(gryffindor, hufflepuff))),
			},
		},
	},
	{
		name: "CNPAdminTierEgressUDP",
		upstream: "CNPAdminTierEgressUDP: Tests support for egress traffic (UDP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "egress-udp as declared: to ravenclaw accepted, to slytherin denied on UDP 5353, to gryffindor accepted on UDP 53 only",
				do:   do(apply(houseRulesCNP("egress-udp", admin, 7, "hufflepuff", true, "ravenclaw", udpP(5353), "gryffindor", udpP(53)))),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor)),
					tcp(53, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapEgress("egress-udp", 0, 1)),
				checks: checks(
					udp(53, allowed().deny(hufflepuff, ravenclaw)),
					udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor).deny(hufflepuff, ravenclaw)),
					tcp(53, allowed().deny(hufflepuff, gryffindor).deny(hufflepuff, ravenclaw))),
			},
			{
				what: "Pass first for ravenclaw",
				do:   do(swapEgress("egress-udp", 0, 2)),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor)),
					tcp(53, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Pass before Deny for slytherin on UDP 5353",
				do:   do(swapEgress("egress-udp", 3, 4)),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(hufflepuff, gryffindor)),
					tcp(53, allowed().deny(hufflepuff, gryffindor))),
			},
		},
	},
	{
		name: "CNPAdminTierEgressSCTP",
		upstream: "CNPAdminTierEgressSCTP: Tests support for egress traffic (SCTP protocol) using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "egress-sctp as declared: to gryffindor accepted, to slytherin denied on SCTP 9003, to hufflepuff accepted on SCTP 9003 only",
				do:   do(apply(houseRulesCNP("egress-sctp", admin, 8, "ravenclaw", true, "gryffindor", sctp9003, "hufflepuff", sctp9003))),
				checks: checks(
					sctp(9003, allowed().deny(ravenclaw, slytherin)),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff))),
			},
			{
				what: "Deny before Accept for gryffindor",
				do:   do(swapEgress("egress-sctp", 0, 1)),
				checks: checks(
					sctp(9003, allowed().deny(ravenclaw, slytherin).deny(ravenclaw, gryffindor)),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff).deny(ravenclaw, gryffindor)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff).deny(ravenclaw, gryffindor))),
			},
			{
				what: "Pass first for gryffindor",
				do:   do(swapEgress("egress-sctp", 0, 2)),
				checks: checks(
					sctp(9003, allowed().deny(ravenclaw, slytherin)),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff))),
			},
			{
				what: "Pass before Deny for slytherin on SCTP 9003",
				do:   do(swapEgress("egress-sctp", 3, 4)),
				checks: checks(
					sctp(9003, allowed()),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff))),
			},
		},
	},
	{
		name: "CNPAdminTierGress",
		upstream: "CNPAdminTierGress: Tests support for combined ingress and egress traffic rules in the cluster " +
			"network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what:   "gress-rules as declared",
				do:     do(apply(gressRulesCNP("gress-rules", admin, 15))),
				checks: gressChecks(allowed()),
			},
			{
				what: "Deny before Accept for ravenclaw, both directions",
				do:   do(swapEgress("gress-rules", 0, 1), swapIngress("gress-rules", 0, 1)),
				// Everything of the declared state, and gryffindor and ravenclaw cut both ways.
				checks: gressChecks(allowed().deny(gryffindor, ravenclaw).deny(ravenclaw, gryffindor)),
			},
			{
				what:   "Pass first for ravenclaw, both directions",
				do:     do(swapEgress("gress-rules", 0, 2), swapIngress("gress-rules", 0, 2)),
				checks: gressChecks(allowed()),
			},
			{
				what: "Pass before Deny for slytherin, both directions",
				do:   do(swapEgress("gress-rules", 3, 4), swapIngress("gress-rules", 3, 4)),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, hufflepuff)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor)),
					udp(53, allowed().deny(gryffindor, hufflepuff).deny(hufflepuff, gryffindor)),
					udp(5353, allowed()),
					sctp(9003, allowed()),
					sctp(9005, allowed().deny(gryffindor, hufflepuff).deny(hufflepuff, gryffindor))),
			},
		},
	},
	{
		name: "CNPAdminTierEgressInlineCIDRPeers",
		upstream: "CNPAdminTierEgressInlineCIDRPeers: Tests support for egress traffic to CIDR peers using cluster " +
			"network policy API based on a server and client model",
		steps: inlineCIDRSteps(inlineCIDRCNP("inline-cidr-as-peers-example", admin, 85, nil,
			objects.SubjectPods(houseSel("gryffindor"), houseSel("gryffindor")))),
	},
	{
		name: "CNPAdminTierPodSelector",
		upstream: "CNPAdminTierPodSelector: Tests support for pod selectors in the subject and peers of " +
			"ClusterNetworkPolicy on Admin Tier, used alone and combined with namespace selectors, with Accept and " +
			"Deny rules, a port-restricted rule, and pod label changes",
		steps: podSelectorSteps(admin, 20, 21),
	},
	{
		name: "CNPAdminTierPortRange",
		upstream: "CNPAdminTierPortRange: Tests support for combined ingress and egress port range rules across " +
			"protocols in ClusterNetworkPolicy on Admin Tier",
		steps: portRangeSteps(admin, 9),
	},
	{
		name: "CNPAdminTierPriorityField",
		upstream: "CNPAdminTierPriorityField: Tests support for cluster network policy API's .spec.priority field " +
			"based on a server and client model",
		steps: []cnpStep{
			{
				what: "Deny at priority 50 before Pass at 60: slytherin and gryffindor cut both ways",
				do: do(apply(
					bothWaysCNP("priority-50-example", admin, 50, objects.Deny, "deny-all-ingress-from-slytherin", "deny-all-egress-to-slytherin"),
					bothWaysCNP("old-priority-60-new-priority-40-example", admin, 60, objects.Pass, "pass-all-ingress-from-slytherin", "pass-all-egress-to-slytherin"),
					bothWaysCNP("default", base, 10, objects.Accept, "allow-all-ingress-from-slytherin", "allow-all-egress-to-slytherin"),
				)),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor).deny(gryffindor, slytherin)),
					udp(5353, allowed().deny(slytherin, gryffindor).deny(gryffindor, slytherin))),
			},
			{
				what: "the Pass moves to priority 40: on to NetworkPolicy (none), then the Baseline Accept",
				do: do(mutate("old-priority-60-new-priority-40-example", "priority 40", func(p *v1alpha2.ClusterNetworkPolicy) {
					p.Spec.Priority = 40
				})),
				checks: checks(tcp(80, allowed()), udp(5353, allowed())),
			},
		},
	},
	{
		name: "CNPAdminTierSamePriority",
		upstream: "CNPAdminTierSamePriority: Tests that ClusterNetworkPolicies in the Admin tier with the same " +
			"priority are all applied, both when they share a subject with disjoint rules and when they reference the " +
			"same peer from different subjects, in both ingress and egress directions",
		steps: samePrioritySteps(admin, 15, ""),
	},
	{
		name: "CNPAdminTierIntegration",
		upstream: "CNPAdminTierIntegration: Tests integration support for gress traffic between admin CNP, NP and " +
			"baseline CNP using PASS action based on a server and client model",
		steps: []cnpStep{
			{
				what: "admin Deny for slytherin both ways; the NetworkPolicy isolates gryffindor both ways, open to slytherin only",
				do:   do(apply(integrationAdmin(), integrationNP(), integrationBaseline())),
				// gryffindor may talk to slytherin (which the Admin tier denies first) and to its
				// own node only (the NetworkPolicy).
				checks: checks(tcp(80, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor)),
					udp(53, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor))),
			},
			{
				what: "the ingress rule becomes Pass: slytherin reaches gryffindor through the NetworkPolicy",
				do: do(mutate("pass-example", "ingress rule 0 Pass", func(p *v1alpha2.ClusterNetworkPolicy) {
					p.Spec.Ingress[0].Action = objects.Pass
				})),
				checks: checks(tcp(80, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor).allow(slytherin, gryffindor)),
					udp(53, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor).allow(slytherin, gryffindor))),
			},
			{
				what: "the egress rule becomes Pass: gryffindor reaches slytherin through the NetworkPolicy",
				do: do(mutate("pass-example", "egress rule 0 Pass", func(p *v1alpha2.ClusterNetworkPolicy) {
					p.Spec.Egress[0].Action = objects.Pass
				})),
				checks: checks(
					tcp(80, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor).
						allow(slytherin, gryffindor).allow(gryffindor, slytherin)),
					udp(53, allowed().denyIn(gryffindor).denyOut(gryffindor).allowOwnNode(gryffindor).
						allow(slytherin, gryffindor).allow(gryffindor, slytherin))),
			},
			{
				what: "the NetworkPolicy is deleted: what the Admin tier passes meets the Baseline Deny",
				do:   do(deleteObject(integrationNP())),
				checks: checks(tcp(80, allowed().deny(slytherin, gryffindor).deny(gryffindor, slytherin)),
					udp(53, allowed().deny(slytherin, gryffindor).deny(gryffindor, slytherin))),
			},
		},
	},
	{
		name: "CNPAdminTierEgressNamedPort",
		upstream: "CNPAdminTierEgressNamedPort: Tests support for egress traffic on a named port using cluster " +
			"network policy API based on a server and client model",
		steps: []cnpStep{{
			what: "egress-tcp with its TCP 8080 accept rewritten as the named port web (TCP 80 of the destination pods)",
			do: do(apply(withProtocols(houseRulesCNP("egress-tcp", admin, 6, "gryffindor", true, "ravenclaw", tcpP(80), "hufflepuff", tcpP(8080)),
				true, 5, objects.NamedDestination("web")))),
			checks: checks(
				tcp(80, allowed().deny(gryffindor, slytherin)),
				tcp(8080, allowed().deny(gryffindor, hufflepuff)),
				udp(80, allowed().deny(gryffindor, hufflepuff))),
		}},
	},
	{
		name: "CNPAdminTierIngressNamedPort",
		upstream: "CNPAdminTierIngressNamedPort: Tests support for ingress traffic on a named port using cluster " +
			"network policy API based on a server and client model",
		steps: []cnpStep{{
			what: "ingress-udp with its UDP 53 accept rewritten as the named port dns (UDP 53 of the hufflepuff pods)",
			do: do(apply(withProtocols(houseRulesCNP("ingress-udp", admin, 4, "hufflepuff", false, "ravenclaw", udpP(5353), "gryffindor", udpP(53)),
				false, 5, objects.NamedDestination("dns")))),
			checks: checks(
				udp(53, allowed()),
				udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff)),
				tcp(53, allowed().deny(gryffindor, hufflepuff))),
		}},
	},
	{
		name: "CNPAdminTierEgressNodePeers",
		upstream: "CNPAdminTierEgressNodePeers: Tests support for egress traffic to node peers using cluster network " +
			"policy API based on a server and client model",
		steps: []cnpStep{{
			what: "node-and-cidr-as-peers-example: nodes accepted on TCP 80, passed on UDP 53; slytherin, nodes and every address denied",
			do: do(apply(objects.ClusterPolicy("node-and-cidr-as-peers-example", admin, 75, nil,
				objects.SubjectPods(houseSel("gryffindor"), houseSel("gryffindor")),
				egressRule(objects.Accept, "allow-egress-to-80-on-nodes", linuxNodes(), tcpP(80)),
				egressRule(objects.Pass, "pass-egress-to-53-on-nodes", linuxNodes(), udpP(53)),
				egressRule(objects.Deny, "deny-egress-to-slytherin-and-nodes-and-internet",
					peers(housePodsPeer("slytherin"), linuxNodes(), everyAddress()))))),
			checks: checks(
				tcp(80, allowed().denyOut(gryffindor).allow(gryffindor, nodeHosts)),
				udp(53, allowed().denyOut(gryffindor).allow(gryffindor, nodeHosts)),
				tcp(8080, allowed().denyOut(gryffindor)),
				udp(5353, allowed().denyOut(gryffindor)),
				sctp(9003, allowed().denyOut(gryffindor))),
		}},
	},

	// The Baseline tier.

	{
		name: "CNPBaselineTierIngressTCP",
		upstream: "CNPBaselineTierIngressTCP: Tests support for ingress traffic (TCP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: ravenclaw accepted, slytherin denied on TCP 80, hufflepuff accepted on TCP 80 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "gryffindor", false, "ravenclaw", tcpP(80), "hufflepuff", tcpP(80)))),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapIngress("default", 0, 1)),
				checks: checks(
					tcp(80, allowed().deny(slytherin, gryffindor).deny(ravenclaw, gryffindor)),
					tcp(8080, allowed().deny(hufflepuff, gryffindor).deny(ravenclaw, gryffindor)),
					udp(80, allowed().deny(hufflepuff, gryffindor).deny(ravenclaw, gryffindor))),
			},
		},
	},
	{
		name: "CNPBaselineTierIngressUDP",
		upstream: "CNPBaselineTierIngressUDP: Tests support for ingress traffic (UDP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: ravenclaw accepted, slytherin denied on UDP 5353, gryffindor accepted on UDP 53 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "hufflepuff", false, "ravenclaw", udpP(5353), "gryffindor", udpP(53)))),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapIngress("default", 0, 1)),
				checks: checks(
					udp(53, allowed().deny(ravenclaw, hufflepuff)),
					udp(5353, allowed().deny(slytherin, hufflepuff).deny(gryffindor, hufflepuff).deny(ravenclaw, hufflepuff)),
					tcp(5353, allowed().deny(gryffindor, hufflepuff).deny(ravenclaw, hufflepuff))),
			},
		},
	},
	{
		name: "CNPBaselineTierIngressSCTP",
		upstream: "CNPBaselineTierIngressSCTP: Tests support for ingress traffic (SCTP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: gryffindor accepted, slytherin denied on SCTP 9003, hufflepuff accepted on SCTP 9003 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "ravenclaw", false, "gryffindor", sctp9003, "hufflepuff", sctp9003))),
				checks: checks(
					sctp(9003, allowed().deny(slytherin, ravenclaw)),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw)),
					tcp(9003, allowed().deny(hufflepuff, ravenclaw))),
			},
			{
				what: "Deny before Accept for gryffindor",
				do:   do(swapIngress("default", 0, 1)),
				checks: checks(
					sctp(9003, allowed().deny(slytherin, ravenclaw).deny(gryffindor, ravenclaw)),
					sctp(9005, allowed().deny(hufflepuff, ravenclaw).deny(gryffindor, ravenclaw)),
					tcp(9003, allowed().deny(hufflepuff, ravenclaw).deny(gryffindor, ravenclaw))),
			},
		},
	},
	{
		name: "CNPBaselineTierEgressTCP",
		upstream: "CNPBaselineTierEgressTCP: Tests support for egress traffic (TCP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: to ravenclaw accepted, to slytherin denied on TCP 80, to hufflepuff accepted on TCP 8080 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "gryffindor", true, "ravenclaw", tcpP(80), "hufflepuff", tcpP(8080)))),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, slytherin).deny(gryffindor, hufflepuff)),
					tcp(8080, allowed()),
					udp(8080, allowed().deny(gryffindor, hufflepuff))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapEgress("default", 0, 1)),
				checks: checks(
					tcp(80, allowed().deny(gryffindor, slytherin).deny(gryffindor, hufflepuff).deny(gryffindor, ravenclaw)),
					tcp(8080, allowed().deny(gryffindor, ravenclaw)),
					udp(8080, allowed().deny(gryffindor, hufflepuff).deny(gryffindor, ravenclaw))),
			},
		},
	},
	{
		name: "CNPBaselineTierEgressUDP",
		upstream: "CNPBaselineTierEgressUDP: Tests support for egress traffic (UDP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: to ravenclaw accepted, to slytherin denied on UDP 5353, to gryffindor accepted on UDP 53 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "hufflepuff", true, "ravenclaw", udpP(5353), "gryffindor", udpP(53)))),
				checks: checks(
					udp(53, allowed()),
					udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor)),
					tcp(53, allowed().deny(hufflepuff, gryffindor))),
			},
			{
				what: "Deny before Accept for ravenclaw",
				do:   do(swapEgress("default", 0, 1)),
				checks: checks(
					udp(53, allowed().deny(hufflepuff, ravenclaw)),
					udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor).deny(hufflepuff, ravenclaw)),
					tcp(53, allowed().deny(hufflepuff, gryffindor).deny(hufflepuff, ravenclaw))),
			},
		},
	},
	{
		name: "CNPBaselineTierEgressSCTP",
		upstream: "CNPBaselineTierEgressSCTP: Tests support for egress traffic (SCTP protocol) using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what: "default as declared: to gryffindor accepted, to slytherin denied on SCTP 9003, to hufflepuff accepted on SCTP 9003 only",
				do:   do(apply(houseRulesCNP("default", base, 10, "ravenclaw", true, "gryffindor", sctp9003, "hufflepuff", sctp9003))),
				checks: checks(
					sctp(9003, allowed().deny(ravenclaw, slytherin)),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff))),
			},
			{
				what: "Deny before Accept for gryffindor",
				do:   do(swapEgress("default", 0, 1)),
				checks: checks(
					sctp(9003, allowed().deny(ravenclaw, slytherin).deny(ravenclaw, gryffindor)),
					sctp(9005, allowed().deny(ravenclaw, hufflepuff).deny(ravenclaw, gryffindor)),
					tcp(9003, allowed().deny(ravenclaw, hufflepuff).deny(ravenclaw, gryffindor))),
			},
		},
	},
	{
		name: "CNPBaselineTierGress",
		upstream: "CNPBaselineTierGress: Tests support for combined ingress and egress traffic rules in the " +
			"baseline cluster network policy API based on a server and client model",
		steps: []cnpStep{
			{
				what:   "default as declared",
				do:     do(apply(gressRulesCNP("default", base, 10))),
				checks: gressChecks(allowed()),
			},
			{
				what:   "Deny before Accept for ravenclaw, both directions",
				do:     do(swapEgress("default", 0, 1), swapIngress("default", 0, 1)),
				checks: gressChecks(allowed().deny(gryffindor, ravenclaw).deny(ravenclaw, gryffindor)),
			},
		},
	},
	{
		name: "CNPBaselineTierEgressInlineCIDRPeers",
		upstream: "CNPBaselineTierEgressInlineCIDRPeers: Tests support for egress traffic to CIDR peers using " +
			"baseline cluster network policy API based on a server and client model",
		steps: inlineCIDRSteps(inlineCIDRCNP("default", base, 10, nsNamed("gryffindor"))),
	},
	{
		name: "CNPBaselineTierPodSelector",
		upstream: "CNPBaselineTierPodSelector: Tests support for pod selectors in the subject and peers of " +
			"ClusterNetworkPolicy on Baseline Tier, used alone and combined with namespace selectors, with Accept " +
			"and Deny rules, a port-restricted rule, and pod label changes",
		steps: podSelectorSteps(base, 10, 10),
	},
	{
		name: "CNPBaselineTierPortRange",
		upstream: "CNPBaselineTierPortRange: Tests support for combined ingress and egress port range rules across " +
			"protocols in ClusterNetworkPolicy on Baseline Tier",
		steps: portRangeSteps(base, 10),
	},
	{
		name: "CNPBaselineTierSamePriority",
		upstream: "CNPBaselineTierSamePriority: Tests that ClusterNetworkPolicies in the Baseline tier with the " +
			"same priority are all applied, both when they share a subject with disjoint rules and when they " +
			"reference the same peer from different subjects, in both ingress and egress directions",
		steps: samePrioritySteps(base, 10, "baseline-"),
	},
	{
		name: "CNPBaselineTierEgressNamedPort",
		upstream: "CNPBaselineTierEgressNamedPort: Tests support for egress traffic on a named port using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{{
			what: "default (egress-udp) with its UDP 53 accept rewritten as the named port dns (UDP 53 of the gryffindor pods)",
			do: do(apply(withProtocols(houseRulesCNP("default", base, 10, "hufflepuff", true, "ravenclaw", udpP(5353), "gryffindor", udpP(53)),
				true, 3, objects.NamedDestination("dns")))),
			checks: checks(
				udp(53, allowed()),
				udp(5353, allowed().deny(hufflepuff, slytherin).deny(hufflepuff, gryffindor)),
				tcp(53, allowed().deny(hufflepuff, gryffindor))),
		}},
	},
	{
		name: "CNPBaselineTierIngressNamedPort",
		upstream: "CNPBaselineTierIngressNamedPort: Tests support for ingress traffic on a named port using baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{{
			what: "default (ingress-tcp) with its TCP 80 accept rewritten as the named port web (TCP 80 of the gryffindor pods)",
			do: do(apply(withProtocols(houseRulesCNP("default", base, 10, "gryffindor", false, "ravenclaw", tcpP(80), "hufflepuff", tcpP(80)),
				false, 3, objects.NamedDestination("web")))),
			checks: checks(
				tcp(80, allowed().deny(slytherin, gryffindor)),
				tcp(8080, allowed().deny(hufflepuff, gryffindor)),
				udp(80, allowed().deny(hufflepuff, gryffindor))),
		}},
	},
	{
		name: "CNPBaselineTierEgressNodePeers",
		upstream: "CNPBaselineTierEgressNodePeers: Tests support for egress traffic to node peers using  baseline " +
			"cluster network policy API based on a server and client model",
		steps: []cnpStep{{
			what: "default: nodes accepted on TCP 80-8080, nodes and every address denied",
			do: do(apply(objects.ClusterPolicy("default", base, 10, nsNamed("gryffindor"),
				egressRule(objects.Accept, "allow-egress-to-80-8080-on-nodes", linuxNodes(), objects.TCPRange(80, 8080)),
				egressRule(objects.Deny, "deny-egress-to-nodes-and-internet", peers(linuxNodes(), everyAddress()))))),
			checks: checks(
				tcp(80, allowed().denyOut(gryffindor).allow(gryffindor, nodeHosts)),
				tcp(8080, allowed().denyOut(gryffindor).allow(gryffindor, nodeHosts)),
				tcp(53, allowed().denyOut(gryffindor)),
				udp(5353, allowed().denyOut(gryffindor)),
				sctp(9003, allowed().denyOut(gryffindor))),
		}},
	},

	// Ours: what the API specifies (or our implementation fixes) and upstream does not test.

	{
		name:     "EgressAcceptStillNeedsIngress",
		upstream: "ours: an egress Accept ends the egress evaluation, the destination's ingress still applies (Accept's doc comment)",
		steps: []cnpStep{
			{
				what: "gryffindor's egress to ravenclaw accepted by the Admin tier; ravenclaw isolated by a NetworkPolicy admitting nothing",
				do: do(apply(
					objects.ClusterPolicy("gryffindor-to-ravenclaw", admin, 20, nsNamed("gryffindor"),
						egressRule(objects.Accept, "accept-to-ravenclaw", objects.NamespacesPeer(nsNamed("ravenclaw")))),
					objects.Policy(nsName("ravenclaw")+"/deny-ingress", objects.IsolateIngress()))),
				checks: checks(tcp(80, allowed().denyIn(ravenclaw)), udp(53, allowed().denyIn(ravenclaw))),
			},
			{
				what: "an Admin ingress Accept for ravenclaw from gryffindor overrides the NetworkPolicy",
				do: do(apply(objects.ClusterPolicy("ravenclaw-from-gryffindor", admin, 21, nsNamed("ravenclaw"),
					ingressRule(objects.Accept, "accept-from-gryffindor", objects.NamespacesPeer(nsNamed("gryffindor")))))),
				checks: checks(tcp(80, allowed().denyIn(ravenclaw).allow(gryffindor, ravenclaw)),
					udp(53, allowed().denyIn(ravenclaw).allow(gryffindor, ravenclaw))),
			},
		},
	},
	{
		name:     "BaselineOnlyWhereNetworkPolicyDoesNotIsolate",
		upstream: "ours: the Baseline tier decides only the directions no NetworkPolicy isolates (Tier's doc comment)",
		steps: []cnpStep{{
			what: "Baseline denies gryffindor to and from slytherin; a NetworkPolicy isolates gryffindor's ingress, open to every pod",
			do: do(apply(
				bothWaysCNP("default", base, 10, objects.Deny, "deny-from-slytherin", "deny-to-slytherin"),
				objects.Policy(nsName("gryffindor")+"/from-every-pod", objects.IsolateIngress(objects.Ingress(
					objects.From(objects.NamespacesLabelled())))))),
			// Ingress: the NetworkPolicy decides (slytherin admitted, non-pods not); egress: the
			// Baseline Deny.
			checks: checks(tcp(80, allowed().deny(ext, gryffindor).deny(nodeHosts, gryffindor).deny(gryffindor, slytherin)),
				udp(53, allowed().deny(ext, gryffindor).deny(nodeHosts, gryffindor).deny(gryffindor, slytherin))),
		}},
	},
	{
		name:     "BaselinePassIsTheDefault",
		upstream: "ours: a Baseline Pass skips the rest of the tier to the default allow (Pass's doc comment)",
		steps: []cnpStep{{
			what: "Baseline for gryffindor: Pass slytherin, then Deny every pod",
			do: do(apply(objects.ClusterPolicy("default", base, 10, nsNamed("gryffindor"),
				ingressRule(objects.Pass, "pass-from-slytherin", objects.NamespacesPeer(nsNamed("slytherin"))),
				ingressRule(objects.Deny, "deny-from-every-pod", objects.NamespacesPeer(objects.Selector()))))),
			checks: checks(tcp(80, allowed().deny(housePods, gryffindor).allow(slytherin, gryffindor)),
				udp(53, allowed().deny(housePods, gryffindor).allow(slytherin, gryffindor))),
		}},
	},
	{
		name:     "EqualPrioritiesByName",
		upstream: "ours: within one priority, policies apply in the order of their names (the API leaves the order to the implementation)",
		steps: []cnpStep{
			{
				what: "a-accept (slytherin) before b-deny (every pod) at the same priority",
				do: do(apply(
					objects.ClusterPolicy("a-accept", admin, 30, nsNamed("gryffindor"),
						ingressRule(objects.Accept, "accept-slytherin", objects.NamespacesPeer(nsNamed("slytherin")))),
					objects.ClusterPolicy("b-deny", admin, 30, nsNamed("gryffindor"),
						ingressRule(objects.Deny, "deny-every-pod", objects.NamespacesPeer(objects.Selector()))))),
				checks: checks(tcp(80, allowed().deny(housePods, gryffindor).allow(slytherin, gryffindor))),
			},
			{
				what: "the same rules under swapped names: a-deny before b-accept",
				do: do(deleteObject(objects.ClusterPolicy("a-accept", admin, 30, nil)),
					deleteObject(objects.ClusterPolicy("b-deny", admin, 30, nil)),
					apply(
						objects.ClusterPolicy("a-deny", admin, 30, nsNamed("gryffindor"),
							ingressRule(objects.Deny, "deny-every-pod", objects.NamespacesPeer(objects.Selector()))),
						objects.ClusterPolicy("b-accept", admin, 30, nsNamed("gryffindor"),
							ingressRule(objects.Accept, "accept-slytherin", objects.NamespacesPeer(nsNamed("slytherin")))))),
				checks: checks(tcp(80, allowed().deny(housePods, gryffindor))),
			},
		},
	},
	{
		name:     "HostNetworkPodsAreNeitherSubjectsNorPeers",
		upstream: "ours: hostNetwork pods are not selected as subjects or peers (Subject's and the peers' doc comments)",
		steps: []cnpStep{{
			what: "the centaurs' namespace as a subject denying everything, and as a peer denied to and from every pod",
			do: do(apply(
				objects.ClusterPolicy("forbidden-forrest-isolated", admin, 40, houseSel(hostHouse),
					ingressRule(objects.Deny, "deny-every-pod", objects.NamespacesPeer(objects.Selector())),
					egressRule(objects.Deny, "deny-everything", everyAddress())),
				objects.ClusterPolicy("no-forbidden-forrest", admin, 41, objects.Selector(),
					ingressRule(objects.Deny, "deny-from-forbidden-forrest", objects.NamespacesPeer(houseSel(hostHouse))),
					egressRule(objects.Deny, "deny-to-centaurs", objects.PodsPeer(houseSel(hostHouse), objects.Selector()))))),
			checks: checks(tcp(80, allowed()), udp(53, allowed())),
		}},
	},
	{
		name:     "NodePeersSelectNodes",
		upstream: "ours: a nodes peer selects Nodes by label and matches their status.addresses",
		steps: []cnpStep{{
			what: "gryffindor denied to node-2 only (its hostname label)",
			do: do(apply(objects.ClusterPolicy("no-node-2", admin, 45, nsNamed("gryffindor"),
				egressRule(objects.Deny, "deny-to-node-2", objects.NodesPeer(objects.Selector("kubernetes.io/hostname", "node-2")))))),
			// Both gryffindor pods lose node-2, harry-potter-1 its own node.
			checks: checks(tcp(80, allowed().deny(gryffindor, pod(hostIDs[1]))),
				udp(53, allowed().deny(gryffindor, pod(hostIDs[1])))),
		}},
	},
	{
		name:     "OwnNodeJudgedByTiersOnly",
		upstream: "ours: a pod's traffic to its own node: the tiers judge it, NetworkPolicy always allows it (and so isolates it from the Baseline tier)",
		steps: []cnpStep{
			{
				what: "Baseline: gryffindor denied both nodes",
				do: do(apply(objects.ClusterPolicy("default", base, 10, nsNamed("gryffindor"),
					egressRule(objects.Deny, "deny-to-nodes", linuxNodes())))),
				checks: checks(tcp(80, allowed().deny(gryffindor, nodeHosts)), udp(53, allowed().deny(gryffindor, nodeHosts))),
			},
			{
				what: "a NetworkPolicy isolates gryffindor's egress, open to slytherin: its own node is allowed again, the other not",
				do: do(apply(objects.Policy(nsName("gryffindor")+"/to-slytherin", objects.IsolateEgress(objects.Egress(
					objects.To(objects.NamespacesLabelled(houseLabel, "slytherin"))))))),
				checks: checks(tcp(80, allowed().denyOut(gryffindor).allow(gryffindor, slytherin).allowOwnNode(gryffindor)),
					udp(53, allowed().denyOut(gryffindor).allow(gryffindor, slytherin).allowOwnNode(gryffindor))),
			},
			{
				what: "an Admin Deny of the nodes overrides the NetworkPolicy",
				do: do(apply(objects.ClusterPolicy("no-nodes", admin, 10, nsNamed("gryffindor"),
					egressRule(objects.Deny, "deny-to-nodes", linuxNodes())))),
				checks: checks(tcp(80, allowed().denyOut(gryffindor).allow(gryffindor, slytherin)),
					udp(53, allowed().denyOut(gryffindor).allow(gryffindor, slytherin))),
			},
		},
	},
	{
		name:     "DomainNamesAcceptMatchesNothing",
		upstream: "ours: domainNames peers are not supported; an Accept with domainNames matches nothing (fails closed)",
		steps: []cnpStep{{
			what: "gryffindor: Accept kubernetes.io and *.example.com, then Deny every address",
			do: do(apply(objects.ClusterPolicy("domains-then-deny", admin, 50, nsNamed("gryffindor"),
				egressRule(objects.Accept, "accept-domains", objects.DomainNamesPeer("kubernetes.io", "*.example.com")),
				egressRule(objects.Deny, "deny-everything", everyAddress())))),
			checks: checks(tcp(80, allowed().denyOut(gryffindor)), udp(53, allowed().denyOut(gryffindor))),
		}},
	},
}

// Protocol shorthands for the policies.
func tcpP(n int32) v1alpha2.ClusterNetworkPolicyProtocol { return objects.TCPPort(n) }
func udpP(n int32) v1alpha2.ClusterNetworkPolicyProtocol { return objects.UDPPort(n) }

// sctp9003 is the only SCTP port upstream's rules name.
var sctp9003 = objects.SCTPPort(9003)

// houseNS is a peer of every pod of a house's namespace, selected by name.
func houseNS(house string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.NamespacesPeer(nsNamed(house))
}

func linuxNodes() []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.NodesPeer(objects.Selector(osLabel, "linux"))
}

func everyAddress() []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.NetworksPeer("0.0.0.0/0", "::/0")
}

// ingressRule and egressRule are named rules.
func ingressRule(action v1alpha2.ClusterNetworkPolicyRuleAction, name string, from []v1alpha2.ClusterNetworkPolicyEgressPeer,
	protocols ...v1alpha2.ClusterNetworkPolicyProtocol) objects.ClusterPolicyOption {
	return objects.RuleName(name, objects.ClusterIngress(action, from, protocols...))
}

func egressRule(action v1alpha2.ClusterNetworkPolicyRuleAction, name string, to []v1alpha2.ClusterNetworkPolicyEgressPeer,
	protocols ...v1alpha2.ClusterNetworkPolicyProtocol) objects.ClusterPolicyOption {
	return objects.RuleName(name, objects.ClusterEgress(action, to, protocols...))
}

// cnpRule is ingressRule (egress false) or egressRule.
func cnpRule(egress bool, action v1alpha2.ClusterNetworkPolicyRuleAction, name string, peers []v1alpha2.ClusterNetworkPolicyEgressPeer,
	protocols ...v1alpha2.ClusterNetworkPolicyProtocol) objects.ClusterPolicyOption {
	if egress {
		return egressRule(action, name, peers, protocols...)
	}
	return ingressRule(action, name, peers, protocols...)
}

// housePodsPeer is a peer of a house's pods by their label, in its namespace by label.
func housePodsPeer(house string) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	return objects.PodsPeer(houseSel(house), houseSel(house))
}

// peers joins peer lists.
func peers(lists ...[]v1alpha2.ClusterNetworkPolicyEgressPeer) []v1alpha2.ClusterNetworkPolicyEgressPeer {
	var out []v1alpha2.ClusterNetworkPolicyEgressPeer
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// houseRulesCNP is the shape shared by the standard-{ingress,egress}-{tcp,udp,sctp}-rules
// manifests of both tiers: for the pods of house subject, in one direction,
//
//	Accept, Deny, Pass (Admin only) everything of house all
//	Deny, Pass (Admin only) slytherin at portProto
//	Accept house accepted at acceptProto, Deny the rest of house accepted
func houseRulesCNP(name string, tier v1alpha2.Tier, priority int32, subject string, egress bool,
	all string, portProto v1alpha2.ClusterNetworkPolicyProtocol, accepted string, acceptProto v1alpha2.ClusterNetworkPolicyProtocol,
) *v1alpha2.ClusterNetworkPolicy {
	const port = "slytherin"
	dir := "from"
	if egress {
		dir = "to"
	}
	opts := []objects.ClusterPolicyOption{
		cnpRule(egress, objects.Accept, "allow-"+dir+"-"+all+"-everything", houseNS(all)),
		cnpRule(egress, objects.Deny, "deny-"+dir+"-"+all+"-everything", houseNS(all)),
	}
	if tier == admin {
		opts = append(opts, cnpRule(egress, objects.Pass, "pass-"+dir+"-"+all+"-everything", houseNS(all)))
	}
	opts = append(opts, cnpRule(egress, objects.Deny, "deny-"+dir+"-"+port+"-at-port", houseNS(port), portProto))
	if tier == admin {
		opts = append(opts, cnpRule(egress, objects.Pass, "pass-"+dir+"-"+port+"-at-port", houseNS(port), portProto))
	}
	opts = append(opts,
		cnpRule(egress, objects.Accept, "allow-"+dir+"-"+accepted+"-at-port", houseNS(accepted), acceptProto),
		cnpRule(egress, objects.Deny, "deny-"+dir+"-"+accepted+"-everything-else", houseNS(accepted)))
	return objects.ClusterPolicy(name, tier, priority, nsNamed(subject), opts...)
}

// withProtocols replaces the protocols of one rule (ingress or egress) of p, as the named-port
// tests do.
func withProtocols(p *v1alpha2.ClusterNetworkPolicy, egress bool, rule int, ps ...v1alpha2.ClusterNetworkPolicyProtocol) *v1alpha2.ClusterNetworkPolicy {
	if egress {
		p.Spec.Egress[rule].Protocols = ps
	} else {
		p.Spec.Ingress[rule].Protocols = ps
	}
	return p
}

// gressRulesCNP is standard-gress-rules-combined.yaml of either tier: gryffindor's egress and
// ingress as houseRulesCNP's, with three protocols in the port rules.
func gressRulesCNP(name string, tier v1alpha2.Tier, priority int32) *v1alpha2.ClusterNetworkPolicy {
	slytherinPorts := []v1alpha2.ClusterNetworkPolicyProtocol{tcpP(80), udpP(53), sctp9003}
	var opts []objects.ClusterPolicyOption
	for _, egress := range []bool{true, false} {
		dir, hufflepuffPorts := "from", []v1alpha2.ClusterNetworkPolicyProtocol{tcpP(80), udpP(5353), sctp9003}
		if egress {
			dir, hufflepuffPorts = "to", []v1alpha2.ClusterNetworkPolicyProtocol{tcpP(8080), udpP(5353), sctp9003}
		}
		opts = append(opts,
			cnpRule(egress, objects.Accept, "allow-"+dir+"-ravenclaw-everything", houseNS("ravenclaw")),
			cnpRule(egress, objects.Deny, "deny-"+dir+"-ravenclaw-everything", houseNS("ravenclaw")))
		if tier == admin {
			opts = append(opts, cnpRule(egress, objects.Pass, "pass-"+dir+"-ravenclaw-everything", houseNS("ravenclaw")))
		}
		opts = append(opts, cnpRule(egress, objects.Deny, "deny-"+dir+"-slytherin-at-ports-80-53-9003", houseNS("slytherin"), slytherinPorts...))
		if tier == admin {
			opts = append(opts, cnpRule(egress, objects.Pass, "pass-"+dir+"-slytherin-at-ports-80-53-9003", houseNS("slytherin"), slytherinPorts...))
		}
		opts = append(opts,
			cnpRule(egress, objects.Accept, "allow-"+dir+"-hufflepuff-at-ports", houseNS("hufflepuff"), hufflepuffPorts...),
			cnpRule(egress, objects.Deny, "deny-"+dir+"-hufflepuff-everything-else", houseNS("hufflepuff")))
	}
	return objects.ClusterPolicy(name, tier, priority, nsNamed("gryffindor"), opts...)
}

// gressChecks are the checks of gress-rules as declared (slytherin denied on TCP 80, UDP 53 and
// SCTP 9003 both ways; hufflepuff accepted on TCP 8080 out and TCP 80 in, UDP 5353 and SCTP 9003
// both ways and denied the rest), on top of r.
func gressChecks(r reach) []check {
	return checks(
		tcp(80, r.deny(gryffindor, slytherin).deny(slytherin, gryffindor).deny(gryffindor, hufflepuff)),
		tcp(8080, r.deny(hufflepuff, gryffindor)),
		udp(53, r.deny(gryffindor, slytherin).deny(slytherin, gryffindor).deny(gryffindor, hufflepuff).deny(hufflepuff, gryffindor)),
		udp(5353, r),
		sctp(9003, r.deny(gryffindor, slytherin).deny(slytherin, gryffindor)),
		sctp(9005, r.deny(gryffindor, hufflepuff).deny(hufflepuff, gryffindor)))
}

// inlineCIDRCNP is standard-egress-inline-cidr-rules.yaml of either tier: slytherin's pods
// accepted, every address denied.
func inlineCIDRCNP(name string, tier v1alpha2.Tier, priority int32, subject *metav1.LabelSelector, opts ...objects.ClusterPolicyOption) *v1alpha2.ClusterNetworkPolicy {
	return objects.ClusterPolicy(name, tier, priority, subject, append(opts,
		egressRule(objects.Accept, "allow-egress-to-slytherin", housePodsPeer("slytherin")),
		egressRule(objects.Deny, "deny-egress-to-internet", everyAddress()))...)
}

func inlineCIDRSteps(p *v1alpha2.ClusterNetworkPolicy) []cnpStep {
	all3 := func(r reach) []check { return checks(tcp(80, r), udp(53, r), sctp(9003, r)) }
	luna0, cedric0 := "ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-0"
	return []cnpStep{
		{
			what:   p.Name + " as declared: gryffindor may reach slytherin's pods and nothing else",
			do:     do(apply(p)),
			checks: all3(allowed().denyOut(gryffindor).allow(gryffindor, slytherin)),
		},
		{
			what:   "slytherin's namespace relabelled: its pods are no longer accepted",
			do:     do(labelNamespace("slytherin", houseLabel, "denied-namespace-label")),
			checks: all3(allowed().denyOut(gryffindor)),
		},
		{
			what:   "slytherin's label back",
			do:     do(labelNamespace("slytherin", houseLabel, "slytherin")),
			checks: all3(allowed().denyOut(gryffindor).allow(gryffindor, slytherin)),
		},
		{
			what: "a first rule accepts the addresses of luna-lovegood-0 and cedric-diggory-0",
			do: do(mutate(p.Name, "insert allow-egress-to-specific-podIPs", func(p *v1alpha2.ClusterNetworkPolicy) {
				var cidrs []string
				for _, id := range []string{luna0, cedric0} {
					v4, v6 := cnpPodAddrs(id)
					cidrs = append(cidrs, netip.PrefixFrom(v4, 32).String(), netip.PrefixFrom(v6, 128).String())
				}
				first := objects.ClusterPolicy("", "", 0, nil,
					egressRule(objects.Accept, "allow-egress-to-specific-podIPs", objects.NetworksPeer(cidrs...))).Spec.Egress
				p.Spec.Egress = append(first, p.Spec.Egress...)
			})),
			checks: all3(allowed().denyOut(gryffindor).allow(gryffindor, slytherin).allow(gryffindor, pod(luna0, cedric0))),
		},
	}
}

// podSelectorSteps is the pod-selector test of either tier (standard-pod-selector-rules.yaml):
// pod-selector-rules (subject: gryffindor's pods by label, every namespace) and
// label-selected-subject-rules (subject: ravenclaw's pods labelled restricted).
func podSelectorSteps(tier v1alpha2.Tier, priority, labelledPriority int32) []cnpStep {
	draco0, luna0, luna1 := "slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-0", "ravenclaw/luna-lovegood-1"
	cedric0, cedric1 := "hufflepuff/cedric-diggory-0", "hufflepuff/cedric-diggory-1"
	byName := func(name string) *metav1.LabelSelector { return objects.Selector(podNameLabel, name) }
	podSelectorRules := objects.ClusterPolicy("pod-selector-rules", tier, priority, nil,
		objects.SubjectPods(objects.Selector(), houseSel("gryffindor")),
		egressRule(objects.Accept, "allow-to-luna-lovegood-0-tcp-80", objects.PodsPeer(houseSel("ravenclaw"), byName("luna-lovegood-0")), tcpP(80)),
		egressRule(objects.Deny, "deny-to-ravenclaw-pods", objects.PodsPeer(objects.Selector(), houseSel("ravenclaw"))),
		ingressRule(objects.Accept, "allow-from-draco-malfoy-0", objects.PodsPeer(houseSel("slytherin"), byName("draco-malfoy-0"))),
		ingressRule(objects.Deny, "deny-from-slytherin-pods", objects.PodsPeer(objects.Selector(), houseSel("slytherin"))),
		ingressRule(objects.Deny, "deny-from-blocked-hufflepuff-pods", objects.PodsPeer(houseSel("hufflepuff"), objects.Selector(roleLabel, "blocked"))))
	labelled := objects.ClusterPolicy("label-selected-subject-rules", tier, labelledPriority, nil,
		objects.SubjectPods(houseSel("ravenclaw"), objects.Selector(roleLabel, "restricted")),
		egressRule(objects.Deny, "deny-to-slytherin", houseNS("slytherin")))

	// As declared: gryffindor reaches ravenclaw only at luna-lovegood-0 on TCP 80, and only
	// draco-malfoy-0 of slytherin reaches gryffindor; nobody carries a conformance-role.
	declared80 := allowed().deny(gryffindor, ravenclaw).allow(gryffindor, pod(luna0)).deny(slytherin, gryffindor).allow(pod(draco0), gryffindor)
	declared8080 := allowed().deny(gryffindor, ravenclaw).deny(slytherin, gryffindor).allow(pod(draco0), gryffindor)
	blocked, restricted := []string{roleLabel, "blocked"}, []string{roleLabel, "restricted"}
	return []cnpStep{
		{
			what:   "both policies as declared",
			do:     do(apply(podSelectorRules, labelled)),
			checks: checks(tcp(80, declared80), tcp(8080, declared8080)),
		},
		{
			what: "cedric-diggory-0 blocked",
			do:   do(labelPods(blocked, cedric0)),
			checks: checks(tcp(80, declared80.deny(pod(cedric0), gryffindor)),
				tcp(8080, declared8080.deny(pod(cedric0), gryffindor))),
		},
		{
			what: "cedric-diggory-1 blocked instead; luna-lovegood-0 restricted",
			do:   do(labelPods(nil, cedric0), labelPods(blocked, cedric1), labelPods(restricted, luna0)),
			checks: checks(tcp(80, declared80.deny(pod(cedric1), gryffindor).deny(pod(luna0), slytherin)),
				tcp(8080, declared8080.deny(pod(cedric1), gryffindor).deny(pod(luna0), slytherin))),
		},
		{
			what: "nobody blocked; luna-lovegood-1 restricted instead",
			do:   do(labelPods(nil, cedric1, luna0), labelPods(restricted, luna1)),
			checks: checks(tcp(80, declared80.deny(pod(luna1), slytherin)),
				tcp(8080, declared8080.deny(pod(luna1), slytherin))),
		},
	}
}

// portRangeSteps is standard-port-range-rules-combined.yaml of either tier: gryffindor accepted to
// and from ravenclaw on TCP 80-8080, hufflepuff on UDP 53-5353, slytherin on SCTP 9003-9005, and
// denied to and from every namespace labelled with a house (itself and the centaurs' included).
func portRangeSteps(tier v1alpha2.Tier, priority int32) []cnpStep {
	anyHouse := objects.NamespacesPeer(objects.Expression(houseLabel, metav1.LabelSelectorOpExists))
	p := objects.ClusterPolicy("port-range-rules", tier, priority, nsNamed("gryffindor"),
		egressRule(objects.Accept, "allow-to-ravenclaw-tcp-port-range", houseNS("ravenclaw"), objects.TCPRange(80, 8080)),
		egressRule(objects.Accept, "allow-to-hufflepuff-udp-port-range", houseNS("hufflepuff"), objects.UDPRange(53, 5353)),
		egressRule(objects.Accept, "allow-to-slytherin-sctp-port-range", houseNS("slytherin"), objects.SCTPRange(9003, 9005)),
		egressRule(objects.Deny, "deny-all-egress", anyHouse),
		ingressRule(objects.Accept, "allow-from-ravenclaw-tcp-port-range", houseNS("ravenclaw"), objects.TCPRange(80, 8080)),
		ingressRule(objects.Accept, "allow-from-hufflepuff-udp-port-range", houseNS("hufflepuff"), objects.UDPRange(53, 5353)),
		ingressRule(objects.Accept, "allow-from-slytherin-sctp-port-range", houseNS("slytherin"), objects.SCTPRange(9003, 9005)),
		ingressRule(objects.Deny, "deny-all-ingress", anyHouse))
	// Every pod cut from gryffindor both ways (gryffindor's own included); the centaurs are not
	// pods of their namespace for policy, the external host is no pod at all.
	closed := allowed().deny(gryffindor, housePods).deny(housePods, gryffindor)
	withHouse := func(house sel) reach { return closed.allow(gryffindor, house).allow(house, gryffindor) }
	return []cnpStep{{
		what: "port-range-rules as declared",
		do:   do(apply(p)),
		checks: checks(
			tcp(80, withHouse(ravenclaw)), tcp(5353, withHouse(ravenclaw)), tcp(8080, withHouse(ravenclaw)),
			udp(53, withHouse(hufflepuff)), udp(5353, withHouse(hufflepuff)), udp(8080, closed),
			sctp(9003, withHouse(slytherin)), sctp(9005, withHouse(slytherin))),
	}}
}

// bothWaysCNP is one of the priority test's policies: gryffindor's pods, one rule each way with
// action for slytherin's pods.
func bothWaysCNP(name string, tier v1alpha2.Tier, priority int32, action v1alpha2.ClusterNetworkPolicyRuleAction, in, out string) *v1alpha2.ClusterNetworkPolicy {
	slytherinPods := housePodsPeer("slytherin")
	return objects.ClusterPolicy(name, tier, priority, nil, objects.SubjectPods(houseSel("gryffindor"), houseSel("gryffindor")),
		ingressRule(action, in, slytherinPods),
		egressRule(action, out, slytherinPods))
}

// samePrioritySteps is standard-same-priority.yaml of either tier: three policies at one priority
// (names prefixed with prefix), each denying one house both ways on one TCP port.
func samePrioritySteps(tier v1alpha2.Tier, priority int32, prefix string) []cnpStep {
	pair := func(subject, peer string, port int32) *v1alpha2.ClusterNetworkPolicy {
		return objects.ClusterPolicy(prefix+"same-priority-"+subject+"-"+peer,
			tier,
			priority,
			nsNamed(subject),
			cnpRule(false, objects.Deny, "deny-from-"+peer, houseNS(peer), tcpP(port)),
			cnpRule(true, objects.Deny, "deny-to-"+peer, houseNS(peer), tcpP(port)))
	}
	return []cnpStep{{
		what: "gryffindor denies slytherin and hufflepuff on TCP 80, hufflepuff denies slytherin on TCP 8080, both ways",
		do:   do(apply(pair("gryffindor", "slytherin", 80), pair("gryffindor", "hufflepuff", 80), pair("hufflepuff", "slytherin", 8080))),
		checks: checks(
			tcp(80, allowed().deny(gryffindor, slytherin).deny(slytherin, gryffindor).deny(gryffindor, hufflepuff).deny(hufflepuff, gryffindor)),
			tcp(8080, allowed().deny(hufflepuff, slytherin).deny(slytherin, hufflepuff))),
	}}
}

// The integration test's objects (api_integration/standard-anp-np-banp.yaml).
func integrationAdmin() *v1alpha2.ClusterNetworkPolicy {
	return objects.ClusterPolicy("pass-example", admin, 10, houseSel("gryffindor"),
		ingressRule(objects.Deny, "deny-all-ingress-from-slytherin", objects.NamespacesPeer(houseSel("slytherin"))),
		egressRule(objects.Deny, "deny-all-egress-to-slytherin", objects.NamespacesPeer(houseSel("slytherin"))))
}

func integrationNP() *networkingv1.NetworkPolicy {
	return objects.Policy(nsName("gryffindor")+"/allow-gress-from-to-slytherin-to-gryffindor",
		objects.IsolateIngress(objects.Ingress(objects.From(objects.NamespacesLabelled(houseLabel, "slytherin")))),
		objects.IsolateEgress(objects.Egress(objects.To(objects.NamespacesLabelled(houseLabel, "slytherin")))))
}

func integrationBaseline() *v1alpha2.ClusterNetworkPolicy {
	return objects.ClusterPolicy("default", base, 10, houseSel("gryffindor"),
		ingressRule(objects.Deny, "deny-all-ingress-from-slytherin", objects.NamespacesPeer(houseSel("slytherin"))),
		egressRule(objects.Deny, "deny-all-egress-to-slytherin", objects.NamespacesPeer(houseSel("slytherin"))))
}
