# KernelLab: the commands people type.
#   make report   fused-vs-unfused attention report for this machine (reports/)
#   make test     build and run the test suite
# Dependencies (libopenblas-dev libnuma-dev pkg-config) are installed when missing.

SWIFT       ?= swift
REPORTS     ?= reports
THREADS     ?= $(shell nproc)
DEB_PKGS    := libopenblas-dev libnuma-dev pkg-config
BIN_RELEASE := .build/release/kernel-lab

.PHONY: all deps build release test report attention-report clean

all: build

# Install the Debian packages the package links against, only when missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product kernel-lab

# XCTest only: Swift Testing would add a closing "0 tests" line of its own.
test: deps
	$(SWIFT) test --disable-swift-testing

# The main job. Until the roofline profiler lands this is the fused-vs-unfused
# attention comparison at the shapes of the README's table.
report: attention-report

attention-report: release
	@mkdir -p $(REPORTS)
	@$(BIN_RELEASE) info | tee $(REPORTS)/machine.txt
	@tmp=$(REPORTS)/.attention.md.tmp; : > $$tmp; \
	for args in "--seq 1024" "--seq 4096" "--seq 4096 --causal" "--seq 4096 --head-dim 128"; do \
	  for t in 1 $(THREADS); do \
	    hd=""; case "$$args" in *head-dim*) ;; *) hd="--head-dim 64";; esac; \
	    echo "kernel-lab attention --batch 1 --heads 8 $$args $$hd --threads $$t --pass both --impl both --repeats 3" | tee -a $$tmp; \
	    $(BIN_RELEASE) attention --batch 1 --heads 8 $$args $$hd --threads $$t --pass both --impl both --repeats 3 | tee -a $$tmp || exit 1; \
	    echo >> $$tmp; \
	    [ "$$t" = "$(THREADS)" ] && break; \
	  done; \
	done; mv $$tmp $(REPORTS)/attention.md
	@echo "report written to $(REPORTS)/attention.md"

clean:
	rm -rf .build $(REPORTS)
