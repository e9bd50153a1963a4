# chatsim: every target needs only Go. Tools run through `go run pkg@version`
# and add nothing to go.mod.
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
MINCOVER    ?= 85

.PHONY: run build test cover lint fuzz golden clean

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

# The fuzz target for the room logic, for a minute.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzHistory -fuzztime 1m .

# Rewrite the golden files under testdata/ after a deliberate change.
golden:
	$(GO) test -count=1 -run TestGolden -update .

clean:
	rm -f chatsim cover.out
