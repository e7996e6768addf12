# dcroll: `make test` is what CI runs (.ci/run).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/dcroll/dcroll/modes.Version=$(VERSION) -X github.com/dcroll/dcroll/modes.Commit=$(COMMIT)

.PHONY: build test bench fuzz clean demo package repo chaos

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dcroll .

# staticcheck is a tool of the module (go.mod's tool directive): no install.
test:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -race -timeout 15m ./...

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# A throwaway data center on this machine: installs the zookeeper package if
# missing (Debian), builds dcroll and rolls an upgrade across 9 local hosts.
demo:
	@if [ -z "$$ZOOKEEPER_JAR$$DEMO_ZOOKEEPER" ] && ! { command -v java >/dev/null && [ -f /usr/share/java/zookeeper.jar ]; }; then \
		echo "make demo: installing the zookeeper package"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y zookeeper; \
	fi
	$(MAKE) build
	./dcroll demo $(DEMO_FLAGS)

# Packages for Debian and rpm distributions (packaging/): a static amd64
# binary in dist/, then dist/dcroll_<V>_amd64.deb and dist/dcroll-<V>-1.x86_64.rpm.
package:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/dcroll .
	$(GO) run ./packaging/cmd/mkpkg --version '$(VERSION)' --binary dist/dcroll --out dist

# Signed apt and dnf repositories of the packages in dist/ (packaging/mkrepo.sh),
# added to what $(REPO) holds; publish $(REPO)/public. DCROLL_REPO_KEY names
# the signing key (an armored secret key file); no key is ever made here.
REPO ?= dist/repo
repo: package
	packaging/mkrepo.sh '$(REPO)' dist/*.deb dist/*.rpm

# Benchmarks recorded in docs/BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench Boot -benchtime 20x -count 6 ./agent/ | tee bench.txt
	$(GO) test -run '^$$' -bench Rollout -benchtime 5x -count 6 ./roll/ | tee -a bench.txt
	$(GO) run ./bench/transfer

# The long chaos run of docs/RELIABILITY.md, as root: SCHEDULES randomized
# fault schedules (about 30 s each) against a data center of network
# namespaces (e2e/). SEED replays a run; the summary goes to chaos.md.
SCHEDULES ?= 100
SEED      ?= 0
chaos:
	$(GO) test -race -run TestChaos -timeout 0 -v ./e2e/ -args -e2e.schedules $(SCHEDULES) -e2e.seed $(SEED) -e2e.report $(CURDIR)/chaos.md

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 60s ./config/
	$(GO) test -run '^$$' -fuzz FuzzDecodeService -fuzztime 60s ./roll/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./state/
	$(GO) test -run '^$$' -fuzz FuzzParseMetainfo -fuzztime 60s ./fetch/
	$(GO) test -run '^$$' -fuzz FuzzUnpack -fuzztime 60s ./fetch/
	$(GO) test -run '^$$' -fuzz FuzzDecodeManifest -fuzztime 60s ./roll/

clean:
	rm -f dcroll bench.txt chaos.md
	rm -rf dist
