package agent

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flock-net/flock-netpol/internal/controller"
)

// The agent's cache is controller-runtime's informer cache: per type, a client-go
// SharedIndexInformer with a namespace index and the type's transform
// (sigs.k8s.io/controller-runtime/pkg/cache/internal/informers.go). With client-go 0.37 the
// WatchListClient feature is on by default, so the informer fills itself from one watch that
// streams every object as an ADDED event and ends the initial state with a bookmark, transforming
// each object as it arrives. The fakes below serve exactly that stream, decoding every object from
// its serialised form as the client would, so what ends up in the indexer (and what is garbage)
// is what the agent really holds. The API server sends protobuf to controller-runtime; JSON
// decodes to the same Go structs, with every string likewise in its own allocation.

// deserializer decodes objects the way client-go's codecs do.
var deserializer = serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()

// source yields the serialised objects of one type, in the order the server streams them.
type source = iter.Seq[[]byte]

// streamLW is a ListerWatcher over a source. It answers the watch-list request with the whole
// source and a closing bookmark, then keeps the watch open and silent. A plain list (the
// reflector's fallback when watch-list fails) is served too, and counted.
type streamLW struct {
	newObj  func() client.Object
	newList func() client.ObjectList
	src     source
	lists   atomic.Int32
}

func (s *streamLW) listWatch() *toolscache.ListWatch {
	// A *toolscache.ListWatch, as controller-runtime uses: the reflector then considers
	// watch-list supported, as it does in production.
	return &toolscache.ListWatch{
		ListWithContextFunc: func(_ context.Context, _ metav1.ListOptions) (kruntime.Object, error) {
			s.lists.Add(1)
			list := s.newList()
			var objs []kruntime.Object
			for data := range s.src {
				obj, err := s.decode(data)
				if err != nil {
					return nil, err
				}
				objs = append(objs, obj)
			}
			if err := apimeta.SetList(list, objs); err != nil {
				return nil, err
			}
			list.SetResourceVersion("1")
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w := &streamWatch{ch: make(chan watch.Event, 64), stop: make(chan struct{})}
			initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
			go w.serve(ctx, s, initial)
			return w, nil
		},
	}
}

func (s *streamLW) decode(data []byte) (client.Object, error) {
	into := s.newObj()
	obj, _, err := deserializer.Decode(data, nil, into)
	if err != nil {
		return nil, err
	}
	co, ok := obj.(client.Object)
	if !ok {
		return nil, fmt.Errorf("decoded %T, not a client.Object", obj)
	}
	return co, nil
}

// streamWatch is one watch on a streamLW.
type streamWatch struct {
	ch   chan watch.Event
	stop chan struct{}
	once sync.Once
}

func (w *streamWatch) Stop()                          { w.once.Do(func() { close(w.stop) }) }
func (w *streamWatch) ResultChan() <-chan watch.Event { return w.ch }

func (w *streamWatch) serve(ctx context.Context, s *streamLW, initial bool) {
	defer close(w.ch)
	send := func(ev watch.Event) bool {
		select {
		case w.ch <- ev:
			return true
		case <-w.stop:
		case <-ctx.Done():
		}
		return false
	}
	if initial {
		rv := "1"
		for data := range s.src {
			obj, err := s.decode(data)
			if err != nil {
				send(watch.Event{Type: watch.Error, Object: &metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}})
				return
			}
			rv = obj.GetResourceVersion()
			if !send(watch.Event{Type: watch.Added, Object: obj}) {
				return
			}
		}
		// The end of the initial state: a bookmark of the watched type carrying the annotation
		// the API server sets (KEP-3157).
		bm := s.newObj()
		bm.SetResourceVersion(rv)
		bm.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		if !send(watch.Event{Type: watch.Bookmark, Object: bm}) {
			return
		}
	}
	select {
	case <-w.stop:
	case <-ctx.Done():
	}
}

// transforms returns the agent's cache transform for each type, read from
// controller.CacheOptions so that this measures exactly what the agent configures.
func transforms() map[string]toolscache.TransformFunc {
	opts := controller.CacheOptions("node-0", false)
	out := map[string]toolscache.TransformFunc{}
	for obj, by := range opts.ByObject {
		t := by.Transform
		if t == nil {
			t = opts.DefaultTransform
		}
		out[fmt.Sprintf("%T", obj)] = t
	}
	return out
}

// kind describes one cached type.
type kind struct {
	name    string // as %T of the object, e.g. "*v1.Pod"
	newObj  func() client.Object
	newList func() client.ObjectList
}

var (
	podKind    = kind{fmt.Sprintf("%T", &corev1.Pod{}), func() client.Object { return &corev1.Pod{} }, func() client.ObjectList { return &corev1.PodList{} }}
	nsKind     = kind{fmt.Sprintf("%T", &corev1.Namespace{}), func() client.Object { return &corev1.Namespace{} }, func() client.ObjectList { return &corev1.NamespaceList{} }}
	policyKind = kind{fmt.Sprintf("%T", &networkingv1.NetworkPolicy{}), func() client.Object { return &networkingv1.NetworkPolicy{} }, func() client.ObjectList { return &networkingv1.NetworkPolicyList{} }}
)

// cachedInformer is one running informer and the ListerWatcher feeding it.
type cachedInformer struct {
	kind     kind
	informer toolscache.SharedIndexInformer
	lw       *streamLW
}

// startInformer builds an informer for k as controller-runtime does for the agent (its indexers and
// constructor, the transform when transform is true), runs it until ctx ends and returns once it
// has synced.
func startInformer(ctx context.Context, k kind, src source, transform bool) (*cachedInformer, error) {
	lw := &streamLW{newObj: k.newObj, newList: k.newList, src: src}
	// As controller-runtime builds it for the agent: the indexers it asks for, through the
	// constructor the agent's cache options give it.
	inf := controller.CacheOptions("node-0", false).NewInformer(lw.listWatch(), k.newObj(), 0, toolscache.Indexers{
		toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc,
	})
	if transform {
		t, ok := transforms()[k.name]
		if !ok || t == nil {
			return nil, fmt.Errorf("controller.CacheOptions has no transform for %s", k.name)
		}
		if err := inf.SetTransform(t); err != nil {
			return nil, err
		}
	}
	go inf.RunWithContext(ctx)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("the informer did not sync: " + k.name)
	}
	return &cachedInformer{kind: k, informer: inf, lw: lw}, nil
}

// liveHeap returns the bytes of live heap objects. Two collections: the first may leave objects
// queued for finalisation or swept lazily.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cacheBytes measures the live heap one informer of k holds once it has synced on src (n
// objects), with nothing else referring to its objects. It returns the bytes and the number of
// objects in the indexer.
func cacheBytes(k kind, src source, transform bool) (bytes int64, cached int, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := liveHeap()
	ci, err := startInformer(ctx, k, src, transform)
	if err != nil {
		return 0, 0, err
	}
	if n := ci.lw.lists.Load(); n > 0 {
		return 0, 0, fmt.Errorf("the informer fell back to %d plain lists instead of one watch-list", n)
	}
	// Let the informer's goroutines go idle: only the indexer (and the informer's fixed
	// bookkeeping) should be left holding memory.
	time.Sleep(100 * time.Millisecond)
	after := liveHeap()
	cached = len(ci.informer.GetIndexer().ListKeys())
	runtime.KeepAlive(ci)
	return int64(after) - int64(before), cached, nil
}

// informerGetter hands the reconciler's controller.CacheSource the informers, as the manager's
// cache does (GetInformer): the reconciler then reads their indexers directly.
type informerGetter map[string]toolscache.SharedIndexInformer // by kind name

var _ controller.InformerGetter = informerGetter{}

func (g informerGetter) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	inf, ok := g[fmt.Sprintf("%T", obj)]
	if !ok {
		return nil, fmt.Errorf("no cache for %T", obj)
	}
	return inf, nil
}
