// Command goclient is the Go anchor of `make bench`: the containerd Go client doing the
// same work as the Python SDK, so the two can be compared in one run.
//
//	goclient -address SOCK -namespace NS -image REF lifecycle -count N
//	goclient -address SOCK -namespace NS -image REF parallel -count 32
//
// Both print one JSON object: per-lifecycle wall times (seconds) or the wall time of the
// parallel batch, plus the process's own CPU time (user + sys, seconds).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
)

type result struct {
	Mode    string    `json:"mode"`
	Walls   []float64 `json:"walls"`
	CPU     float64   `json:"cpu"`
	CPUEach []float64 `json:"cpu_each"`
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(usage.Utime) + tv(usage.Stime)
}

// lifecycle runs /bin/true once: container with a new snapshot, task, start, wait, delete.
func lifecycle(ctx context.Context, client *containerd.Client, image containerd.Image, id string) error {
	container, err := client.NewContainer(ctx, id,
		containerd.WithNewSnapshot(id+"-snap", image),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("/bin/true")),
	)
	if err != nil {
		return err
	}
	defer container.Delete(ctx, containerd.WithSnapshotCleanup)
	task, err := container.NewTask(ctx, cio.NullIO)
	if err != nil {
		return err
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		task.Delete(ctx)
		return err
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx)
		return err
	}
	status := <-exited
	if code, _, err := status.Result(); err != nil || code != 0 {
		task.Delete(ctx)
		return fmt.Errorf("exit %d: %v", code, err)
	}
	_, err = task.Delete(ctx)
	return err
}

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	namespace := flag.String("namespace", "bench", "namespace")
	ref := flag.String("image", "", "image reference (already pulled)")
	count := flag.Int("count", 10, "lifecycles (sequential) or goroutines (parallel)")
	flag.Parse()
	mode := flag.Arg(0)
	ctx := namespaces.WithNamespace(context.Background(), *namespace)
	client, err := containerd.New(*address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	image, err := client.GetImage(ctx, *ref)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := result{Mode: mode}
	prefix := fmt.Sprintf("go-%d-%d", os.Getpid(), time.Now().UnixNano())
	switch mode {
	case "lifecycle":
		for i := 0; i < *count; i++ {
			cpu0 := cpuSeconds()
			start := time.Now()
			if err := lifecycle(ctx, client, image, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			out.Walls = append(out.Walls, time.Since(start).Seconds())
			out.CPUEach = append(out.CPUEach, cpuSeconds()-cpu0)
		}
	case "parallel":
		cpu0 := cpuSeconds()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, *count)
		for i := 0; i < *count; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs <- lifecycle(ctx, client, image, fmt.Sprintf("%s-%d", prefix, i))
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		out.Walls = []float64{time.Since(start).Seconds()}
		out.CPUEach = []float64{cpuSeconds() - cpu0}
	default:
		fmt.Fprintln(os.Stderr, "usage: goclient [flags] lifecycle|parallel")
		os.Exit(2)
	}
	out.CPU = cpuSeconds()
	json.NewEncoder(os.Stdout).Encode(out)
}
