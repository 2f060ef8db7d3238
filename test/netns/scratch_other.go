//go:build !linux

package netns

// Scratch needs Linux: elsewhere it returns an error wrapping ErrUnavailable, so that kernel tests
// compile everywhere and skip.
func Scratch() (name string, cleanup func() error, err error) {
	return "", nil, unavailable("network namespaces need Linux")
}
