package controller_test

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// The envtest suite runs the real manager and reconciler against a real kube-apiserver and etcd
// (no scheduler, no kubelet: the specs set spec.nodeName and write status.podIPs themselves).
// As root the agent programs the real nft inside a throwaway network namespace per spec and the
// specs assert on what the kernel holds; otherwise a fake nft that keeps the last applied script
// stands in for the kernel. FLOCK_REQUIRE_KERNEL_TESTS=1 makes the fallback a failure;
// FLOCK_ENVTEST_FAKE_NFT=1 forces it even as root (to exercise the unprivileged path).
//
// Ginkgo v2 refuses to run a suite twice in one process, so `go test -count=N` with N > 1 fails
// with "Rerunning Suite"; to repeat, run `go test` several times (or `ginkgo --repeat=N`).

var (
	testEnv *envtest.Environment
	// restCfg is the admin config of the test API server; managers and the spec client use it.
	restCfg *rest.Config
	// k8sClient writes the cluster state the specs need (uncached: reads see every write).
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	// kernelReal is true when specs apply through the real nft in network namespaces.
	kernelReal bool
	// suiteDir holds files that live as long as the suite: the agent binary, the kubeconfig.
	suiteDir string
)

func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "controller envtest suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	// The suite's API server serves ClusterNetworkPolicy only while the specs that install its
	// CRD run (clusterpolicy_envtest_test.go); the client knows the types either way.
	Expect(v1alpha2.Install(scheme)).To(Succeed())

	assets, err := testenv.Assets("")
	if err != nil {
		Fail(err.Error())
	}
	By("starting kube-apiserver and etcd from " + assets)
	testEnv = &envtest.Environment{BinaryAssetsDirectory: assets}
	restCfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "starting envtest with the binaries in %s", assets)
	// Client-side throttling (5 QPS by default) would turn the 500-pod burst into minutes; the
	// test API server has no other users.
	restCfg.QPS = -1
	k8sClient, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	suiteDir, err = os.MkdirTemp("", "flock-envtest-")
	Expect(err).NotTo(HaveOccurred())

	var why string
	kernelReal, why = kernelAvailable()
	if kernelReal {
		AddReportEntry("kernel", "applying through the real nft in throwaway network namespaces")
	} else {
		if testenv.Required() {
			Fail("kernel tests cannot run (" + why + ") and FLOCK_REQUIRE_KERNEL_TESTS is set")
		}
		AddReportEntry("kernel", "NOT using the real nft ("+why+"): a fake nft stands in for the kernel; run as root for kernel assertions")
	}
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
	if suiteDir != "" {
		Expect(os.RemoveAll(suiteDir)).To(Succeed())
	}
})

// kernelAvailable reports whether the specs can program nftables in network namespaces, and if
// not, why.
func kernelAvailable() (bool, string) {
	if os.Getenv("FLOCK_ENVTEST_FAKE_NFT") != "" {
		return false, "FLOCK_ENVTEST_FAKE_NFT is set"
	}
	// The probe is a scratch namespace like those of the specs: root, ip and nft, a namespace can
	// be created and nft works in it.
	_, cleanup, err := netns.Scratch()
	if err != nil {
		return false, err.Error()
	}
	if err := cleanup(); err != nil {
		return false, err.Error()
	}
	return true, ""
}
