package synth

import "math/rand/v2"

// The vocabulary of generated names and labels. Slices, not maps, so every draw is ordered.

// teams own the non-system namespaces; policies select namespaces by the team label.
var teams = []string{
	"ads", "analytics", "billing", "catalog", "checkout", "data", "fraud", "growth",
	"identity", "inventory", "media", "messaging", "ml", "mobile", "partners", "payments",
	"pricing", "risk", "search", "security", "shipping", "support", "web", "observability",
}

// envs are the values of the env label, with how often each appears.
var envs = weighted{
	{"prod", 45},
	{"staging", 25},
	{"dev", 20},
	{"qa", 10},
}

// appWords name the apps of a namespace.
var appWords = []string{
	"api", "web", "gateway", "worker", "scheduler", "indexer", "auth", "cart", "orders",
	"ledger", "notifier", "profile", "reports", "recommender", "renderer", "uploader",
	"thumbnailer", "mailer", "exporter", "collector", "sync", "batch", "store", "queue",
	"broker", "session", "quotes", "feed", "tracker", "events", "audit", "router",
}

// Tiers, the tier label of apps: the data tiers get their own ports, and several policy shapes
// select by tier.
const (
	tierFrontend = "frontend"
	tierBackend  = "backend"
	tierWorker   = "worker"
	tierDB       = "db"
	tierCache    = "cache"
	tierSystem   = "system" // the apps of the system namespaces
)

var tiers = weighted{
	{tierFrontend, 20},
	{tierBackend, 45},
	{tierWorker, 15},
	{tierDB, 10},
	{tierCache, 10},
}

// grpcPorts are the numbers the "grpc" named port takes; they differ between apps so that one
// named port resolves to several numbers across a rule's pods.
var grpcPorts = []int32{50051, 50052, 9000, 8081, 6565, 9095, 7070}

// podNameAlphabet is the alphabet Kubernetes uses for generated name suffixes (no vowels, no
// look-alike characters).
const podNameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// weighted is a list of values with relative weights.
type weighted []struct {
	value  string
	weight int
}

// pick draws a value with probability proportional to its weight.
func (w weighted) pick(rng *rand.Rand) string {
	total := 0
	for _, e := range w {
		total += e.weight
	}
	n := rng.IntN(total)
	for _, e := range w {
		if n < e.weight {
			return e.value
		}
		n -= e.weight
	}
	panic("unreachable")
}

// pickOne draws a uniformly random element of s.
func pickOne[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// chance reports true with probability percent/100. Integer arithmetic keeps the draws identical
// on every platform (no floating point, which FMA contraction could round differently).
func chance(rng *rand.Rand, percent int) bool { return rng.IntN(100) < percent }

// randomSuffix returns n characters of podNameAlphabet.
func randomSuffix(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = podNameAlphabet[rng.IntN(len(podNameAlphabet))]
	}
	return string(b)
}
