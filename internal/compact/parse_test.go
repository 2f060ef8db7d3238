package compact

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParseAddrAgreesWithNetip(t *testing.T) {
	inputs := []string{
		"", "1", "1.2.3", "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3.256",
		"01.2.3.4", "1.02.3.4", "1.2.3.00", "1.2.3.0", "10.0.0.1.", ".10.0.0.1", "10..0.1",
		"10.0.0.1 ", " 10.0.0.1", "10.0.0.1%eth0", "1000.0.0.1", "10.0.0.-1", "::1", "fd00::1",
		"::ffff:10.0.0.1", "fe80::1%eth0", "1.2.3.4.5", "99.99.99.99", "100.200.250.255",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789.:af%"
	for range 20000 {
		b := make([]byte, 1+rng.IntN(16))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for range 2000 {
		a := netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		inputs = append(inputs, a.String())
	}
	for _, s := range inputs {
		got, gotErr := parseAddr(s)
		want, wantErr := netip.ParseAddr(s)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("parseAddr(%q) = %v, %v; netip.ParseAddr gives %v, %v", s, got, gotErr, want, wantErr)
		}
	}
}
