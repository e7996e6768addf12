package roll

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// orderCatalog builds a catalog from service -> depends_on.
func orderCatalog(deps map[string][]string) Catalog {
	c := Catalog{}
	for name, d := range deps {
		svc := Service{DependsOn: d, Quorum: Quorum{Count: 1}}
		svc.applyDefaults()
		c[name] = svc
	}
	return c
}

// fleetCatalog: db <- cache <- api <- web, db <- queue <- worker, and a
// lone metrics service.
var fleetCatalog = orderCatalog(map[string][]string{
	"db":      nil,
	"cache":   {"db"},
	"api":     {"cache"},
	"web":     {"api"},
	"queue":   {"db"},
	"worker":  {"queue", "api"},
	"metrics": nil,
})

func TestAutoSteps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		staged []string
		want   [][]string
	}{
		{"chain", []string{"web", "api", "cache"}, [][]string{{"cache"}, {"api"}, {"web"}}},
		{"chain A<-B<-C", []string{"db", "cache", "api"}, [][]string{{"db"}, {"cache"}, {"api"}}},
		{"independent share a step", []string{"metrics", "db", "cache", "queue"}, [][]string{{"db", "metrics"}, {"cache", "queue"}}},
		{"transitive through non-staged", []string{"api", "db"}, [][]string{{"db"}, {"api"}}},
		{"deep transitive", []string{"worker", "db"}, [][]string{{"db"}, {"worker"}}},
		{"longest path wins", []string{"worker", "db", "cache", "queue", "api"}, [][]string{{"db"}, {"cache", "queue"}, {"api"}, {"worker"}}},
		{"one", []string{"web"}, [][]string{{"web"}}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fleetCatalog.AutoSteps(tc.staged)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AutoSteps(%q) = %q, want %q", tc.staged, got, tc.want)
			}
			staged := map[string]bool{}
			for _, s := range tc.staged {
				staged[s] = true
			}
			if len(got) > 0 {
				if err := fleetCatalog.ValidateSteps(got, staged); err != nil {
					t.Errorf("ValidateSteps refuses AutoSteps' own order: %v", err)
				}
			}
		})
	}
}

func TestAutoStepsErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Catalog
		staged  []string
		wantErr error
		wantMsg string
	}{
		{"unknown", fleetCatalog, []string{"db", "nope"}, ErrBadOrder, `service "nope" is not in the catalog`},
		{"duplicate", fleetCatalog, []string{"db", "api", "db"}, ErrBadOrder, `service "db" is listed twice`},
		{"cycle", orderCatalog(map[string][]string{"a": {"b"}, "b": {"a"}}), []string{"a"}, ErrBadCatalog, `dependency cycle: a -> b -> a`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.AutoSteps(tc.staged)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("AutoSteps(%q) = %q, %v; want an error wrapping %v with %q", tc.staged, got, err, tc.wantErr, tc.wantMsg)
			}
			if got != nil {
				t.Errorf("steps %q returned with an error", got)
			}
		})
	}
}

func TestValidateSteps(t *testing.T) {
	staged := map[string]bool{"db": true, "cache": true, "api": true, "web": true, "queue": true, "worker": true}
	for _, tc := range []struct {
		name  string
		steps [][]string
		want  string // "" for a good order, else the whole message
	}{
		{"chain", [][]string{{"db"}, {"cache"}, {"api"}, {"web"}}, ""},
		{"independent together", [][]string{{"db"}, {"cache", "queue"}, {"api"}, {"worker", "web"}}, ""},
		{"independent apart", [][]string{{"db"}, {"queue"}, {"cache"}}, ""},
		{"dependency left to an earlier order", [][]string{{"api"}, {"web"}}, ""},
		{"one", [][]string{{"web"}}, ""},

		{"nothing", nil, `roll: bad deploy order: no services given; name at least one`},
		{"empty step", [][]string{{"db"}, {}, {"api"}}, `roll: bad deploy order: step 2 is empty`},
		{"unknown", [][]string{{"db"}, {"dbb"}}, `roll: bad deploy order: service "dbb" is not in the catalog`},
		{"not staged", [][]string{{"db"}, {"metrics"}}, `roll: bad deploy order: service "metrics" has nothing staged; stage a release of it first`},
		{"twice", [][]string{{"db"}, {"cache"}, {"db"}}, `roll: bad deploy order: service "db" is listed twice, in steps 1 and 3`},
		{"twice in a step", [][]string{{"db", "db"}}, `roll: bad deploy order: service "db" is listed twice in step 1`},
		{"later", [][]string{{"api"}, {"cache"}}, `roll: bad deploy order: "api" depends on "cache", which comes later; put "cache" in an earlier step`},
		{"same step", [][]string{{"cache", "api"}}, `roll: bad deploy order: "api" depends on "cache", which is in the same step; put "cache" in an earlier step`},
		{"transitive later", [][]string{{"api"}, {"db"}}, `roll: bad deploy order: "api" depends on "db" (through "cache"), which comes later; put "db" in an earlier step`},
		{"transitive same step", [][]string{{"db", "web"}}, `roll: bad deploy order: "web" depends on "db" (through "api", "cache"), which is in the same step; put "db" in an earlier step`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fleetCatalog.ValidateSteps(tc.steps, staged)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ValidateSteps(%q) = %v, want nil", tc.steps, err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("ValidateSteps(%q) = nil, want %q", tc.steps, tc.want)
			case err.Error() != tc.want:
				t.Errorf("ValidateSteps(%q)\n got %q\nwant %q", tc.steps, err, tc.want)
			case !errors.Is(err, ErrBadOrder):
				t.Errorf("error does not wrap ErrBadOrder: %v", err)
			}
		})
	}
}

func TestValidateStepsToleratesCycle(t *testing.T) {
	c := orderCatalog(map[string][]string{"a": {"b"}, "b": {"a"}})
	err := c.ValidateSteps([][]string{{"a"}, {"b"}}, map[string]bool{"a": true, "b": true})
	if !errors.Is(err, ErrBadOrder) {
		t.Fatalf("got %v, want an order error", err)
	}
}
