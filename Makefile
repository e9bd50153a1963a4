# chatsim: every target needs only Go. Tools run through `go run pkg@version`
# and add nothing to go.mod.
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   ?= $(GO) run golang.org/x/perf/cmd/benchstat@latest
MINCOVER    ?= 85
BENCHCOUNT  ?= 6
FUZZTIME    ?= 1m
SUDO        ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run build test cover lint fuzz golden bench profile browser-test screenshot clean

run:
	$(GO) run . -users 6

build:
	$(GO) build -o chatsim .

# go vet, then every test under the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Statement coverage; fails below $(MINCOVER)%.
cover:
	$(GO) test -count=1 -coverprofile=cover.out ./...
	@$(GO) tool cover -func=cover.out | awk '/^total:/ { print "total coverage: " $$3; sub("%", "", $$3); if ($$3 + 0 < $(MINCOVER)) { print "below $(MINCOVER)%"; exit 1 } }'

lint:
	$(GO) vet ./...
	$(STATICCHECK) ./...

# The fuzz target for the room logic, for a minute (FUZZTIME=10m for longer).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzHistory -fuzztime $(FUZZTIME) .

# The page of a small run in headless Chromium, installed from Debian's
# chromium package when it is missing: no console message, the diagram
# and its controls work as a person would use them, and a screenshot in
# page.png. Needs more than Go, so make test leaves it out.
browser-test:
	@command -v chromium >/dev/null || { echo "installing chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	$(GO) test -tags browser -count=1 -run TestBrowser .

# The screenshot in docs/page.md, from the browser test.
screenshot:
	CHATSIM_SCREENSHOT=docs/page.png $(MAKE) browser-test

# Rewrite the golden files under testdata/ after a deliberate change.
golden:
	$(GO) test -count=1 -run TestGolden -update .

# BenchmarkDelivery: chatsim against a bare-channel baseline, at 100, 1000
# and 10000 users; then BenchmarkRealTime: the CPU a second of a real-time
# run of 1000 users takes, chatsim against a baseline of the same
# goroutines, tick and fan-out. Both into bench.txt; then benchstat's
# medians, and the ratio of chatsim to its baseline at each size. Compare
# two runs with $(BENCHSTAT) old.txt new.txt.
bench:
	$(GO) test -run '^$$' -bench Delivery -benchtime 10000000x -count $(BENCHCOUNT) -timeout 60m . | tee bench.txt
	$(GO) test -run '^$$' -bench RealTime -benchtime 10x -count $(BENCHCOUNT) -timeout 60m . | grep '^Benchmark' | tee -a bench.txt
	$(BENCHSTAT) bench.txt
	@$(BENCHSTAT) -format csv -filter '.unit:deliveries/s' bench.txt | awk -F, \
	  '/users=[0-9]+\/(channels|chatsim)/ { split($$1, p, "[=/-]"); v[p[3], p[4]] = $$2; n[p[3]] = 1 } \
	   END { printf "\n%-8s %16s %16s %7s\n", "users", "channels/s", "chatsim/s", "ratio"; \
	         for (u in n) printf "%-8s %16.0f %16.0f %7.2f\n", u, v[u, "channels"], v[u, "chatsim"], v[u, "chatsim"] / v[u, "channels"] }' | sort -n
	@$(BENCHSTAT) -format csv -filter '.unit:cpu/s' bench.txt | awk -F, \
	  '/RealTime\/users=[0-9]+\/(baseline|chatsim)/ { split($$1, p, "[=/-]"); v[p[3], p[4]] = $$2; n[p[3]] = 1 } \
	   END { printf "\n%-8s %16s %16s %7s\n", "users", "baseline cpu/s", "chatsim cpu/s", "ratio"; \
	         for (u in n) printf "%-8s %16.3f %16.3f %7.2f\n", u, v[u, "baseline"], v[u, "chatsim"], v[u, "chatsim"] / v[u, "baseline"] }' | sort -n

# CPU and heap profiles of a standard fast run, and an execution trace of a
# smaller one: each action is a task that logs every delivery it made.
profile:
	$(GO) run . -fast -quiet -users 1000 -duration 30s -seed 1 -cpuprofile cpu.prof -memprofile mem.prof
	$(GO) run . -fast -quiet -users 100 -duration 30s -seed 1 -trace trace.out
	$(GO) tool pprof -top -nodecount 20 cpu.prof
	@echo "more: go tool pprof -http=: cpu.prof; go tool pprof -sample_index=inuse_space -top mem.prof; go tool trace trace.out"

clean:
	rm -f chatsim cover.out bench.txt cpu.prof mem.prof trace.out page.png
