package render

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// An established packet whose stamp is older than the current epoch is accepted at once while the
// stamp is still valid at both ends of its connection (see package epoch): at each local end, the
// stamp lies in that address's window, from its oldest valid stamp (Since) to epoch.Horizon; a
// far end (an address not on this node) takes any stamp. Per family:
//
//	fresh-v4 (jumped to by the fast path):
//	    ct original ip saddr vmap @fresh-out-v4   local source: goto window-out-<since>-v4
//	    ct reply ip saddr vmap @fresh-in-v4       local destination: goto window-in-<since>
//	    accept                                    neither end is local
//	window-out-<since>-v4:
//	    ct mark <window> ct reply ip saddr vmap @fresh-in-v4
//	    ct mark <window> accept                   the destination is not local
//	window-in-<since>:
//	    ct mark <window> accept
//
// A packet that falls off a window chain returns to the fast path's caller and is judged again.
// The maps are hash maps of addresses and the windows plain comparisons, one chain per Since. The
// windows were elements of concatenated interval sets (address . mark ranges) before: the kernel
// inserts into such a set in time that grows with its size, and an update that rewrote their
// elements cost 45 ms with 110 local pods and more than a second with 1,000 (issue 17).
//
// Nothing that changes with the epoch is a rule: the fast path compares the stamp with the
// element of the current epoch's set (current-epoch), and the allow chain stamps through a map
// (stamp: ipv4 and ipv6 to stamp-<current>) whose chains stamp-<e> set the mark of epoch e. The
// stamp chains and the windows of every epoch of the current block exist in advance (and those of
// the older Sinces held when the block began, until it ends: epoch.State.Windowed), so a narrowing
// change within a block (63 of every 64) edits elements only: the moved addresses' map elements,
// the stamp map's two, the current epoch's one. An update of elements only goes to the kernel in
// one netlink transaction instead of through nft (the reconciler's Elements), which costs nft's
// start and its loading of the table: 20 to 30 ms at 150,000 pods, against under one. The price
// is 4 chains per epoch of the block, 256 in all, of one or two rules each.

// freshChains declares the chains and maps above (the dispatch chains hold no epoch; the stamp and
// window chains, their rules, the maps and the current epoch's set are epoch parts, left out of
// the digest).
func (s *script) freshChains(rs *ruleset.RuleSet, ep *epoch.State) {
	horizon := epoch.Horizon(ep.Current)
	// since[d][f] lists the local addresses of family f with their Since in direction d.
	type addrSince struct {
		addr  netip.Addr
		since uint32
	}
	var since [2][2][]addrSince
	for _, l := range rs.Local {
		st := [2]uint32{ep.Current, ep.Current}
		if a, ok := ep.Lookup(l.Addr); ok {
			st = a.Since
		}
		f := familyIndex(l.Addr)
		for d := range 2 {
			since[d][f] = append(since[d][f], addrSince{l.Addr, st[d]})
		}
	}
	// Every window a change within the block can need exists already (see epoch.State.Windowed).
	windowed := ep.Windowed()
	first, last := epoch.BlockOf(ep.Current)

	for _, f := range families {
		s.chain(freshChainName(f), comment("established connections stamped before the current epoch: accepted while the stamp is valid at both ends"))
		s.rule(freshChainName(f), fmt.Sprintf("ct original %s saddr vmap @%s", f.proto, freshMapName(egress, f)))
		s.rule(freshChainName(f), fmt.Sprintf("ct reply %s saddr vmap @%s", f.proto, freshMapName(ingress, f)))
		s.rule(freshChainName(f), "accept")
	}
	s.epochChains(epochChainsKey{table: s.table, first: first, last: last, horizon: horizon, windowed: windowed})
	s.epochPart(func() {
		for fi, f := range families {
			for _, d := range []direction{ingress, egress} {
				di, fam := epoch.Ingress, (*family)(nil)
				if d == egress {
					di, fam = epoch.Egress, &families[fi]
				}
				elems := make([]string, 0, len(since[di][fi]))
				for _, a := range since[di][fi] {
					elems = append(elems, a.addr.String()+" : goto "+windowChainName(d, a.since, fam))
				}
				s.verdictMap(freshMapName(d, f), f, elems, fmt.Sprintf("%s: local addresses, to the window of the epochs their stamps may carry", d.name))
			}
		}
		stamp := "goto " + stampChainName(ep.Current)
		s.mapOf(stampName, "nf_proto : verdict", []string{"ipv4 : " + stamp, "ipv6 : " + stamp}, "the chain that stamps accepted connections with the current epoch")
		s.mapOf(currentEpochSet, "mark", []string{fmt.Sprintf("0x%08x comment %s", epoch.Mark(ep.Current), comment("%s%d", epochPrefix, ep.Current))},
			"the current epoch's stamp: an established connection carrying it is accepted at once")
	})
}

// epochChains writes the stamp chain of every epoch of the block and the window chain of every
// Since the table holds windows for (see epoch.State.Windowed), or what the Memo kept of them when
// they are written from the same key: they change only when a block starts.
func (s *script) epochChains(key epochChainsKey) {
	if m, ok := s.memo.lookupEpochChains(&key); ok {
		s.reused(&s.out, m.decls)
		s.reused(&s.rules, m.rules)
		for i, name := range m.names {
			s.tab.chains[name] = m.chains[i]
		}
		s.tab.chainOrder = append(s.tab.chainOrder, m.names...)
		s.stats.Rules += m.nrules
		return
	}
	first, last, horizon, windowed := key.first, key.last, key.horizon, key.windowed
	outAt, rulesAt, order, nrules := s.out.Len(), s.rules.Len(), len(s.tab.chainOrder), s.stats.Rules
	s.epochPart(func() {
		for e := first; e <= last; e++ {
			s.chain(stampChainName(e), comment("accepts, stamping the connection with epoch %d", e))
		}
		for _, e := range windowed {
			s.chain(windowChainName(ingress, e, nil), comment("local destinations whose stamps are valid from epoch %d", e))
		}
		for fi, f := range families {
			for _, e := range windowed {
				s.chain(windowChainName(egress, e, &families[fi]), comment("local %s sources whose stamps are valid from epoch %d", f.nfproto, e))
			}
		}
	})
	s.epochPart(func() {
		for e := first; e <= last; e++ {
			s.rule(stampChainName(e), fmt.Sprintf("ct mark set ct mark and 0x%08x or 0x%08x accept", epoch.LowMask, epoch.Mark(e)))
		}
		for _, e := range windowed {
			for _, w := range epoch.Windows(e, horizon) {
				s.rule(windowChainName(ingress, e, nil), fmt.Sprintf("ct mark 0x%08x-0x%08x accept", w[0], w[1]))
			}
		}
		for fi, f := range families {
			for _, e := range windowed {
				chain := windowChainName(egress, e, &families[fi])
				for _, w := range epoch.Windows(e, horizon) {
					s.rule(chain, fmt.Sprintf("ct mark 0x%08x-0x%08x ct reply %s saddr vmap @%s", w[0], w[1], f.proto, freshMapName(ingress, f)))
					s.rule(chain, fmt.Sprintf("ct mark 0x%08x-0x%08x accept", w[0], w[1]))
				}
			}
		}
	})
	if s.memo == nil {
		return
	}
	m := &memoEpochChains{key: key, decls: string(s.out.Bytes()[outAt:]), rules: string(s.rules.Bytes()[rulesAt:]),
		names: slices.Clone(s.tab.chainOrder[order:]), nrules: s.stats.Rules - nrules}
	for _, name := range m.names {
		m.chains = append(m.chains, s.tab.chains[name])
	}
	s.memo.storeEpochChains(m)
}

// freshPath sends established packets whose stamp is not the current epoch's through the window
// check of their family.
func (s *script) freshPath(chain string) {
	for _, f := range families {
		s.rule(chain, fmt.Sprintf("ct state established,related meta nfproto %s jump %s", f.nfproto, freshChainName(f)))
	}
}

// familyIndex is the index of a's family in families.
func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func freshChainName(f family) string { return freshName + f.suffix }

func freshMapName(d direction, f family) string { return freshName + "-" + d.short + f.suffix }

func stampChainName(e uint32) string { return fmt.Sprintf("%s-%d", stampName, e) }

// windowChainName names the window chain of the stamps valid from epoch since: one per family for
// sources (its rules look the destination up in the family's map), one for both for destinations.
func windowChainName(d direction, since uint32, f *family) string {
	name := fmt.Sprintf("%s-%s-%d", windowName, d.short, since)
	if f != nil {
		name += f.suffix
	}
	return name
}
