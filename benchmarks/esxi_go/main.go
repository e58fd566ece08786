// Command esxi_go is the Go baseline of hvballoon's ESXi sweep benchmark: it logs in with
// govmomi, opens a ContainerView of VMs and hosts, and times the same PropertyCollector
// retrieval hvballoon makes (RetrievePropertiesEx with maxObjects, then
// ContinueRetrievePropertiesEx per token), printing one line of JSON.
//
// Built in GOPATH mode against the distribution's govmomi source, like the test simulator.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

var vmPaths = []string{
	"name",
	"config.instanceUuid",
	"runtime.powerState",
	"runtime.host",
	"runtime.connectionState",
	"config.template",
	"config.hardware.memoryMB",
	"config.memoryAllocation",
	"summary.quickStats.guestMemoryUsage",
	"summary.quickStats.hostMemoryUsage",
	"summary.quickStats.balloonedMemory",
	"summary.quickStats.swappedMemory",
	"summary.quickStats.compressedMemory",
	"summary.quickStats.sharedMemory",
	"summary.quickStats.privateMemory",
	"summary.quickStats.consumedOverheadMemory",
}

func main() {
	rawURL := flag.String("url", "", "SDK URL with user:password, e.g. http://u:p@127.0.0.2:8989/sdk")
	pageSize := flag.Int("page-size", 1000, "maxObjects per page")
	repeat := flag.Int("repeat", 3, "timed sweeps (the median is reported)")
	flag.Parse()
	if *rawURL == "" {
		log.Fatal("-url is required")
	}
	u, err := url.Parse(*rawURL)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, false)
	if err != nil {
		log.Fatal(err)
	}
	v, err := view.NewManager(c.Client).CreateContainerView(
		ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine", "HostSystem"}, true)
	if err != nil {
		log.Fatal(err)
	}
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:  v.Reference(),
			Skip: types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
				Type: "ContainerView", Path: "view",
			}},
		}},
		PropSet: []types.PropertySpec{
			{Type: "VirtualMachine", PathSet: vmPaths},
			{Type: "HostSystem", PathSet: []string{"name"}},
		},
	}
	pc := c.ServiceContent.PropertyCollector

	sweep := func() (int, int) {
		objects, calls := 0, 1
		res, err := methods.RetrievePropertiesEx(ctx, c, &types.RetrievePropertiesEx{
			This: pc, SpecSet: []types.PropertyFilterSpec{spec},
			Options: types.RetrieveOptions{MaxObjects: int32(*pageSize)},
		})
		if err != nil {
			log.Fatal(err)
		}
		r := res.Returnval
		for r != nil {
			objects += len(r.Objects)
			if r.Token == "" {
				break
			}
			next, err := methods.ContinueRetrievePropertiesEx(ctx, c,
				&types.ContinueRetrievePropertiesEx{This: pc, Token: r.Token})
			if err != nil {
				log.Fatal(err)
			}
			calls++
			r = &next.Returnval
		}
		return objects, calls
	}

	var times []float64
	objects, calls := 0, 0
	for i := 0; i < *repeat; i++ {
		began := time.Now()
		objects, calls = sweep()
		times = append(times, time.Since(began).Seconds())
	}
	sort.Float64s(times)
	out, _ := json.Marshal(map[string]interface{}{
		"seconds": times[len(times)/2], "all_seconds": times, "objects": objects, "round_trips": calls,
	})
	fmt.Fprintln(os.Stdout, string(out))
}
