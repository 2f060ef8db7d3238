// Package fuzzbytes hands out a fuzzer's input as small decisions, for the fuzz targets that
// build structured values (objects, rule sets) out of bytes.
package fuzzbytes

// Reader hands out its bytes one decision at a time; once they run out every decision is zero,
// so any input, even an empty one, decides everything.
type Reader struct{ b []byte }

// New reads the fuzzer's input b.
func New(b []byte) *Reader { return &Reader{b: b} }

// Byte returns the next byte, or 0.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// N returns a number in [0, max).
func (r *Reader) N(max int) int { return int(r.Byte()) % max }

// Bool returns a coin flip.
func (r *Reader) Bool() bool { return r.Byte()&1 == 1 }

// Pick returns one of xs.
func Pick[T any](r *Reader, xs ...T) T { return xs[r.N(len(xs))] }

// Len returns how many bytes are left.
func (r *Reader) Len() int { return len(r.b) }
