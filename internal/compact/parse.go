package compact

import "net/netip"

// parseAddr is netip.ParseAddr with a fast path for the plain dotted-quad IPv4 addresses that
// most pods have: it runs for every pod address the cache receives. Anything else
// (IPv6, and IPv4 that is not plain, such as a leading zero, which ParseAddr rejects) is left to
// ParseAddr, so the result is always ParseAddr's.
func parseAddr(s string) (netip.Addr, error) {
	var b [4]byte
	field, digits, value := 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9' && !(digits > 0 && value == 0):
			value = value*10 + int(c-'0')
			digits++
			if value > 255 {
				return netip.ParseAddr(s)
			}
		case c == '.' && digits > 0 && field < 3:
			b[field] = byte(value)
			field, digits, value = field+1, 0, 0
		default:
			return netip.ParseAddr(s)
		}
	}
	if field != 3 || digits == 0 {
		return netip.ParseAddr(s)
	}
	b[3] = byte(value)
	return netip.AddrFrom4(b), nil
}
